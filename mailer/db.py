"""The database: one async engine per process (SQLite pragmas where they are needed) and the
transaction every unit of work runs in."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.expression import Executable

from campaigns.errors import Conflict

POOL_SIZE = 20  # connections per process to PostgreSQL (serve, worker: mind max_connections)


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, hide_parameters=True, **kwargs
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # No JIT: compiling the audience query's expressions cost 0.4-0.9 s of a 2.4 s count over
    # 1,000,000 contacts (bench/audience.py), more than it saved; the rest is short OLTP.
    return create_async_engine(
        url,
        hide_parameters=True,  # an error's log line must not carry addresses (DESIGN)
        # A fixed pool, no overflow: past the pool a burst (a provider's one-click calls)
        # waits for a connection instead of opening and closing one per request, each a
        # new PostgreSQL backend (that cost PostgreSQL 1 ms of CPU per request at 32 at once).
        pool_size=POOL_SIZE,
        max_overflow=0,
        connect_args={"server_settings": {"jit": "off"}},
        **kwargs,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # erasure cascades to consent and orders
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


T = TypeVar("T")
ATTEMPTS = 3


class Database:
    """The engine, its sessions, and the one way to run work: a transaction that commits or
    changes nothing. What the delivery layer, the worker and the controllers get instead of
    the whole service container."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.waiting_room = _waiting_room(url)

    async def transaction(
        self,
        work: Callable[[AsyncSession], Awaitable[T]],
        *,
        retry: bool = True,
        urgent: bool = False,
    ) -> T:
        """Run `work` in one transaction and commit: a request changes everything or nothing.

        A unique-key race with a concurrent request (two pushes of one new address) rolls
        back and runs again; the second run sees the other request's committed row. Work that
        talks to the outside world (an SMTP handoff) passes `retry=False`: running it again
        would send again.
        """
        with self._waiting() if urgent else contextlib.nullcontext():
            return await self._transaction(work, retry, urgent and self.waiting_room is not None)

    async def _transaction(
        self, work: Callable[[AsyncSession], Awaitable[T]], retry: bool, immediate: bool = False
    ) -> T:
        attempts = ATTEMPTS if retry else 1
        for attempt in range(1, attempts + 1):
            async with self.sessions() as session:
                try:
                    if immediate:
                        # SQLite: take the write lock first, waiting for it (busy_timeout). A
                        # transaction that reads first and then writes cannot wait: when a
                        # writer committed since its read, SQLite refuses at once ("database is
                        # locked"), and a sending campaign commits every quarter second.
                        await session.execute(sa.text("BEGIN IMMEDIATE"))
                    result = await work(session)
                    await session.commit()
                    return result
                except IntegrityError as exc:
                    await session.rollback()
                    if attempt == attempts:
                        raise Conflict("the request conflicts with a concurrent change") from exc
                except DBAPIError as exc:
                    await session.rollback()
                    if attempt == attempts or not _is_transient(exc):
                        raise
                await asyncio.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    async def statement(
        self, statement: Executable, rows: Sequence[dict[str, Any]], *, urgent: bool = False
    ) -> list[Any]:
        """One statement that commits by itself, all its rows or none, for a writer as hot as
        the report listener's store, whose one INSERT is all it does before its 250. On
        PostgreSQL autocommitted (no BEGIN and COMMIT round trips: a third of a transaction's
        cost); on SQLite, where SQLAlchemy runs an INSERT ... RETURNING of many rows one row
        at a time, in a transaction. Returns its rows, if any."""

        async def run(connection: Any) -> list[Any]:
            result = await connection.execute(statement, list(rows))
            return list(result.all()) if result.returns_rows else []

        if self.engine.dialect.name == "sqlite":
            return await self.transaction(run, urgent=urgent)
        with self._waiting() if urgent else contextlib.nullcontext():
            async with self._autocommit.connect() as connection:
                return await run(connection)

    async def make_way(self, most_seconds: float = 1.0) -> None:
        """Between the transactions of a long writer (the dispatcher's handoffs): while an
        urgent transaction waits for SQLite's one write lock (an unsubscribe, a report),
        let it go first. SQLite's own wait is no queue: a waiter polls, up to 100 ms apart,
        and a writer that takes the lock back at once can keep it out for seconds. Only the
        waiters already there when it looks are waited for, so a steady stream of them
        slows sending down but cannot stop it. Nothing to do on PostgreSQL, where writers
        of different rows do not wait for each other."""
        if self.waiting_room is None:
            return
        waiting = self._waiting_now()
        deadline = time.monotonic() + most_seconds
        while waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.005)  # the waiter may be another process: nothing to await
            waiting &= self._waiting_now()

    @contextlib.contextmanager
    def _waiting(self) -> Iterator[None]:
        """A ticket in the waiting room (a file: the waiter and the writer may be different
        processes) for as long as the urgent transaction runs."""
        if self.waiting_room is None:
            yield
            return
        self.waiting_room.mkdir(exist_ok=True)
        ticket = self.waiting_room / f"{os.getpid()}-{next(_tickets)}"
        ticket.touch()
        try:
            yield
        finally:
            ticket.unlink(missing_ok=True)

    def _waiting_now(self) -> set[str]:
        """The tickets in the waiting room; one left by a process that was killed is removed."""
        assert self.waiting_room is not None
        stale = time.time() - STALE_TICKET_SECONDS
        tickets = set()
        try:
            with os.scandir(self.waiting_room) as entries:
                for entry in entries:
                    try:
                        if entry.stat().st_mtime < stale:
                            os.unlink(entry.path)
                        else:
                            tickets.add(entry.name)
                    except FileNotFoundError:  # its transaction ended while we looked
                        pass
        except FileNotFoundError:
            pass
        return tickets

    async def close(self) -> None:
        await self.engine.dispose()


STALE_TICKET_SECONDS = 30
_tickets = itertools.count()


def _waiting_room(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(f"{parsed.database}-waiting")


def _is_transient(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return "database is locked" in text or "deadlock" in text or "serializ" in text
