"""The wire journal: which messages of a handed-over batch may be on the wire, and what the
relay answered, written outside the handoff transaction so that it outlives a kill -9.

The handoff transaction holds its rows (C13) until the relay has answered for all of them; a
crash loses its outcomes, and without more to go on every delivery of the batch would be
`unknown` (invariant 6). The journal narrows that to what was on the wire: one row per
batch (`WireLog`), its delivery ids in order and one character per position:

    .  not released: nothing of it was written; queued again after a crash
    w  released: it may be on the wire; `unknown` after a crash unless answered
    s t p h b u  the relay's answer (campaigns/sending/ledger.py, `wire_state`)

An SMTP lane writes a message (its envelope, then its content) only once its position is
released, and a release counts only once its write has committed. Releases are written ahead
of the lanes, `AHEAD` messages per connection (never past the part of the batch a handoff
transaction is sending), half a window at a time: a lane waits only when
a commit takes longer than the relay needs for half a window, and a write serves dozens of
messages (a release for every lane waiting at once cost a third of the sending speed). The
answers go with the releases, or alone every `ANSWER_SECONDS`; nobody waits for them, and
they are written without waiting for the disk: a lost answer only makes its message
`unknown`, whereas a lost release could send it twice.

On PostgreSQL the table is in the database, written over two connections of the journal's
own (durable releases; answers with `synchronous_commit` off); on SQLite it is a file of its
own beside the database, since the handoff holds the database's one write lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol

import asyncpg  # type: ignore[import-untyped]

from campaigns.clock import Clock
from campaigns.sending.ledger import NOT_RELEASED, RELEASED, Journaled, SmtpOutcome, wire_state
from mailer.db import Database

log = logging.getLogger("mailer.journal")
AHEAD = 16  # messages released ahead, per connection
ANSWER_SECONDS = 0.02  # answers alone (no release due) gathered into one write
WRITE_SECONDS = 5.0  # a query that takes longer: the journal is down
_DOT, _RELEASED = ord(NOT_RELEASED), ord(RELEASED)


class JournalDown(Exception):
    """The journal cannot be written (or read): no message may be released."""


_FAILURES = (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, sqlite3.Error)


class WireRecord:
    """One handed-over batch's journal row, as the SMTP lanes use it: `reach` (the part
    being sent), `take` (released? and ask for more ahead), `wait` until released, `answer`;
    then `end`."""

    def __init__(self, journal: WireJournal, key: int, ids: list[int], connections: int) -> None:
        self.journal = journal
        self.key = key
        self.position = {delivery_id: n for n, delivery_id in enumerate(ids)}
        self.states = bytearray(_DOT for _ in ids)
        self.details: dict[int, str] = {}
        self.window = AHEAD * max(1, connections)  # released ahead of the lanes, at most
        self.released = 0  # positions below this are released, durably
        self.wanted = 0  # release up to here
        self.limit = len(ids)  # never beyond the part being sent (`reach`)
        self.down = ""  # why the journal cannot be written, once it cannot
        self._answers = False  # answered since the last write
        self._ending = False
        self._wake = asyncio.Event()  # something to write
        self._hurry = asyncio.Event()  # a release is due, or the batch ends
        self._progress = asyncio.Event()  # set (and replaced) after each write
        self._written_at = 0.0
        self._flusher: asyncio.Task[None] | None = None

    def reach(self, ids: Collection[int]) -> None:
        """The part of the batch now handed over (a handoff transaction's): nothing past it
        is released, so a crash cannot leave `unknown` what was not about to go."""
        self.limit = max((self.position[i] for i in ids), default=-1) + 1

    def take(self, delivery_id: int) -> bool:
        """A lane takes this message: whether it is released already. Once half the window
        ahead of it is used up, the next half is asked for: one write per half window."""
        position = self.position[delivery_id]
        if position + 1 + self.window // 2 > self.wanted and self.wanted < self.limit:
            self.wanted = min(self.limit, position + 1 + self.window)
            self._wake.set()
            self._hurry.set()
        return position < self.released

    async def wait(self, delivery_id: int) -> bool:
        """Until the message is released: True; False when the journal cannot be written."""
        position = self.position[delivery_id]
        while position >= self.released:
            if self.down:
                return False
            self._hurry.set()
            await self._progress.wait()
        return True

    def answer(self, outcome: SmtpOutcome) -> None:
        position = self.position.get(outcome.delivery_id)
        if position is None:
            return
        self.states[position] = ord(wire_state(outcome))
        if outcome.kind != "sent" and outcome.detail:
            self.details[position] = _without_text(outcome.detail)
        if not self._answers:  # the first since the last write starts the next group
            self._answers = True
            self._wake.set()

    async def end(self, finished: bool) -> None:
        """The batch is done with: nothing more is released. `finished`: its outcomes are
        committed to the ledger, so the row may go (with the journal's next write);
        otherwise the row stays for recovery, with the answers not yet written."""
        self._ending = True
        self.wanted = self.released
        if finished:
            self._answers = False
            self.journal.finished(self.key)
        self._wake.set()
        self._hurry.set()
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher

    def _mark_released(self, upto: int) -> None:
        for position in range(self.released, upto):
            if self.states[position] == _DOT:
                self.states[position] = _RELEASED

    async def _flush(self) -> None:
        """The record's writer: a release at once (with the answers so far); answers alone
        at most every `ANSWER_SECONDS`, sooner when a release is asked for meanwhile."""
        try:
            while not self.down:
                if self.wanted <= self.released and not self._answers:
                    if self._ending:
                        return
                    await self._wake.wait()  # something to write
                    self._wake.clear()
                    continue
                if self.wanted <= self.released and not self._ending:
                    delay = self._written_at + ANSWER_SECONDS - time.monotonic()
                    if delay > 0:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(delay):
                                await self._hurry.wait()  # a release, or the batch ends
                        self._hurry.clear()
                        continue  # look again: the batch may have ended meanwhile
                self._hurry.clear()
                await self._write()
        finally:
            if not self._ending:  # a writer that stopped early releases no more
                self.down = self.down or "the wire journal's writer stopped"
            self._progress.set()

    async def _write(self) -> None:
        upto = self.wanted
        releasing = upto > self.released
        self._mark_released(upto)
        self._answers = False
        self._written_at = time.monotonic()
        try:
            await self.journal.write(self, durable=releasing)
        except JournalDown as exc:
            self.down = str(exc)
            log.error("%s", exc)
            return
        if releasing:
            self.released = upto
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()


def _without_text(detail: str) -> str:
    """A relay's reply as its codes only ("550 5.1.1"): its text may name the address, and the
    journal keeps no personal data (campaigns/rights/registry.py). Our own words stay."""
    words = detail.split(maxsplit=2)
    if not (words and len(words[0]) == 3 and words[0].isdigit()):
        return detail[:300]
    codes = [words[0]]
    if len(words) > 1 and all(part.isdigit() for part in words[1].split(".")):
        codes.append(words[1])
    return " ".join(codes) + " (the relay's text is not journaled)"


class WireJournal:
    """One per sending process: its records' writes, and the rows for recovery."""

    def __init__(self, store: _Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._finished: list[int] = []  # rows no longer needed, deleted with the next write

    @classmethod
    def beside(cls, db: Database, clock: Clock) -> WireJournal | None:
        """The journal for this database: a table in it (PostgreSQL, connected as the engine
        connects), a file beside it (SQLite); None for an in-memory database."""
        url = db.engine.url
        if url.get_backend_name() == "sqlite":
            if not url.database or url.database == ":memory:":
                return None
            return cls(_SqliteStore(f"{url.database}-wire"), clock)
        _, connect = db.engine.dialect.create_connect_args(url)
        return cls(_PostgresStore(dict(connect)), clock)

    async def open(
        self, key: int, ids: list[int], connections: int, first: int | None = None
    ) -> WireRecord:
        """A new batch's row, with the start of its `first` messages released (raises
        JournalDown)."""
        record = WireRecord(self, key, ids, connections)
        record.limit = min(len(ids), first or len(ids))
        record.wanted = min(record.limit, record.window)
        record._mark_released(record.wanted)
        await self._guarded(
            self.store.start(
                record.key, json.dumps(ids), record.states.decode("ascii"), self.clock.now()
            )
        )
        record.released = record.wanted
        record._flusher = asyncio.create_task(record._flush())
        return record

    def finished(self, key: int) -> None:
        self._finished.append(key)

    async def write(self, record: WireRecord, durable: bool) -> None:
        finished, self._finished = self._finished, []
        details = json.dumps(record.details) if record.details else None
        try:
            await self._guarded(
                self.store.update(
                    record.key,
                    record.states.decode("ascii"),
                    details,
                    self.clock.now(),
                    durable,
                    [key for key in finished if key != record.key],
                )
            )
        except JournalDown:
            self._finished += finished
            raise

    async def read(self, keys: Collection[int]) -> dict[int, Journaled]:
        """The rows of these batches; one that cannot be read is left out (its batch's
        deliveries are then `unknown`, as without a journal)."""
        read = {}
        for key, ids, states, details in await self._guarded(self.store.read(list(keys))):
            try:
                row = Journaled(
                    [int(i) for i in json.loads(ids)],
                    states,
                    {int(k): str(v) for k, v in json.loads(details).items()} if details else {},
                )
            except (ValueError, TypeError, AttributeError):
                log.error("wire journal row %s cannot be read: its batch is unknown", key)
                continue
            if len(row.ids) == len(row.states):
                read[key] = row
        return read

    async def older_than(self, cutoff: datetime) -> list[int]:
        return list(await self._guarded(self.store.older_than(cutoff)))

    async def forget(self, keys: Collection[int]) -> None:
        if keys:
            await self._guarded(self.store.forget(list(keys)))

    async def close(self) -> None:
        with contextlib.suppress(JournalDown):
            if self._finished:
                await self._guarded(self.store.forget(self._finished))
        with contextlib.suppress(*_FAILURES):
            async with asyncio.timeout(WRITE_SECONDS):
                await self.store.close()

    @staticmethod
    async def _guarded(work: Any) -> Any:
        try:
            return await work
        except _FAILURES as exc:
            raise JournalDown(f"the wire journal cannot be written: {type(exc).__name__}") from exc


class _Store(Protocol):
    """Where the rows are kept. Each query has `WRITE_SECONDS`, counted from when it gets its
    connection; a connection that failed is replaced."""

    async def start(self, key: int, ids: str, states: str, now: datetime) -> None: ...
    async def update(
        self,
        key: int,
        states: str,
        details: str | None,
        now: datetime,
        durable: bool,
        finished: list[int],
    ) -> None: ...
    async def read(self, keys: list[int]) -> list[tuple[int, str, str, str | None]]: ...
    async def older_than(self, cutoff: datetime) -> list[int]: ...
    async def forget(self, keys: list[int]) -> None: ...
    async def close(self) -> None: ...


class _PostgresStore:
    """The `wire_log` table, over connections of the journal's own (not the pool's): the
    handoff holds a pooled one the whole time, and a busy pool must not delay a release.
    Releases go over one that waits for the disk at commit, answers over one that does not."""

    def __init__(self, connect: dict[str, Any]) -> None:
        self.connect = connect  # as the engine connects (host, user, ssl ...)
        self._connections: dict[bool, asyncpg.Connection] = {}
        self._turns = {True: asyncio.Lock(), False: asyncio.Lock()}  # one query at a time each

    @contextlib.asynccontextmanager
    async def _connection(self, durable: bool) -> AsyncIterator[asyncpg.Connection]:
        async with self._turns[durable]:
            connection = self._connections.get(durable)
            if connection is None or connection.is_closed():
                commit = "on" if durable else "off"
                settings = {"jit": "off", "synchronous_commit": commit}
                async with asyncio.timeout(WRITE_SECONDS):
                    connection = await asyncpg.connect(**self.connect, server_settings=settings)
                self._connections[durable] = connection
            try:
                async with asyncio.timeout(WRITE_SECONDS):
                    yield connection
            except BaseException:
                # This connection only: it may be mid-query (a timeout), or lost.
                self._connections.pop(durable, None)
                connection.terminate()
                raise

    async def start(self, key: int, ids: str, states: str, now: datetime) -> None:
        async with self._connection(True) as connection:
            await connection.execute(
                "INSERT INTO wire_log (key, written_at, ids, states) VALUES ($1, $2, $3, $4)",
                key, now, ids, states,
            )  # fmt: skip

    async def update(
        self,
        key: int,
        states: str,
        details: str | None,
        now: datetime,
        durable: bool,
        finished: list[int],
    ) -> None:
        async with self._connection(durable) as connection:
            if finished:  # one statement, one round trip
                await connection.execute(
                    _UPDATE_AND_FORGET, key, states, details, now, finished
                )  # fmt: skip
            else:
                await connection.execute(_UPDATE, key, states, details, now)

    async def read(self, keys: list[int]) -> list[tuple[int, str, str, str | None]]:
        async with self._connection(True) as connection:
            rows = await connection.fetch(
                "SELECT key, ids, states, details FROM wire_log WHERE key = ANY($1::bigint[])",
                keys,
            )
        return [tuple(row) for row in rows]

    async def older_than(self, cutoff: datetime) -> list[int]:
        async with self._connection(True) as connection:
            rows = await connection.fetch("SELECT key FROM wire_log WHERE written_at < $1", cutoff)
        return [row[0] for row in rows]

    async def forget(self, keys: list[int]) -> None:
        async with self._connection(True) as connection:
            await connection.execute("DELETE FROM wire_log WHERE key = ANY($1::bigint[])", keys)

    async def close(self) -> None:
        for connection in self._connections.values():
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)
        self._connections.clear()


_UPDATE = "UPDATE wire_log SET states = $2, details = $3, written_at = $4 WHERE key = $1"
_UPDATE_AND_FORGET = (
    "WITH gone AS (DELETE FROM wire_log WHERE key = ANY($5::bigint[]))"
    " UPDATE wire_log SET states = $2, details = $3, written_at = $4 WHERE key = $1"
)


def _stamp(moment: datetime) -> str:
    """SQLite compares text: one fixed format."""
    return moment.isoformat(timespec="microseconds")


class _SqliteStore:
    """A file of its own, on one thread of its own (sqlite3 blocks while it writes)."""

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS wire_log (key INTEGER PRIMARY KEY, written_at TEXT NOT NULL,"
        " ids TEXT NOT NULL, states TEXT NOT NULL, details TEXT)"
    )

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="wire-journal")
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA busy_timeout=5000")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(self.SCHEMA)
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db

    async def _run(self, work: Any, *args: Any) -> Any:
        async with asyncio.timeout(WRITE_SECONDS):
            return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    async def start(self, key: int, ids: str, states: str, now: datetime) -> None:
        def start() -> None:
            db = self._connection()
            db.execute("PRAGMA synchronous=FULL")
            db.execute(
                "INSERT INTO wire_log (key, written_at, ids, states) VALUES (?, ?, ?, ?)",
                (key, _stamp(now), ids, states),
            )

        await self._run(start)

    async def update(
        self,
        key: int,
        states: str,
        details: str | None,
        now: datetime,
        durable: bool,
        finished: list[int],
    ) -> None:
        def update() -> None:
            db = self._connection()
            # FULL: a release survives a power cut too; NORMAL: an answer survives a kill -9.
            db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            db.execute("BEGIN")
            try:
                db.execute(
                    "UPDATE wire_log SET states = ?, details = ?, written_at = ? WHERE key = ?",
                    (states, details, _stamp(now), key),
                )
                if finished:
                    db.executemany("DELETE FROM wire_log WHERE key = ?", [(k,) for k in finished])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        await self._run(update)

    async def read(self, keys: list[int]) -> list[tuple[int, str, str, str | None]]:
        def read() -> list[tuple[int, str, str, str | None]]:
            sql = (
                "SELECT key, ids, states, details FROM wire_log"
                " WHERE key IN (SELECT value FROM json_each(?))"
            )
            return list(self._connection().execute(sql, (json.dumps(keys),)))

        return await self._run(read)  # type: ignore[no-any-return]

    async def older_than(self, cutoff: datetime) -> list[int]:
        def older() -> list[int]:
            sql = "SELECT key FROM wire_log WHERE written_at < ?"
            return [row[0] for row in self._connection().execute(sql, (_stamp(cutoff),))]

        return await self._run(older)  # type: ignore[no-any-return]

    async def forget(self, keys: list[int]) -> None:
        def forget() -> None:
            self._connection().executemany(
                "DELETE FROM wire_log WHERE key = ?", [(k,) for k in keys]
            )

        await self._run(forget)

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(close)
        self._thread.shutdown(wait=False)
