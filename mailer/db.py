"""The database: one async engine per process (SQLite pragmas where they are needed) and the
transaction every unit of work runs in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from campaigns.errors import Conflict


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # No JIT: compiling the audience query's expressions cost 0.4-0.9 s of a 2.4 s count over
    # 1,000,000 contacts (bench/audience.py), more than it saved; the rest is short OLTP.
    return create_async_engine(
        url,
        pool_size=10,
        max_overflow=10,
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

    async def transaction(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, retry: bool = True
    ) -> T:
        """Run `work` in one transaction and commit: a request changes everything or nothing.

        A unique-key race with a concurrent request (two pushes of one new address) rolls
        back and runs again; the second run sees the other request's committed row. Work that
        talks to the outside world (an SMTP handoff) passes `retry=False`: running it again
        would send again.
        """
        attempts = ATTEMPTS if retry else 1
        for attempt in range(1, attempts + 1):
            async with self.sessions() as session:
                try:
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

    async def close(self) -> None:
        await self.engine.dispose()


def _is_transient(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return "database is locked" in text or "deadlock" in text or "serializ" in text
