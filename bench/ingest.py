"""Ingest benchmark: contacts per second through `POST /api/v1/contacts/batch`.

What is measured, per backend (PostgreSQL, then SQLite):

* API: a real server (`python -m mailer serve --workers 2`, uvicorn; `--workers`) on a freshly
  created and migrated database for every run. The client (httpx, 4 requests in flight;
  `--concurrency`) sends pre-serialised bodies of 1,000 realistic contacts each (an order with 1-2
  categories; about half of them with full newsletter consent evidence). The clock runs from the
  first request to the last response; one small warm-up request precedes it and is not counted.
  Every item of every response must be 201, or the benchmark fails.
* Reference: the floor of what the database itself costs: a plain `executemany` INSERT of the
  same contact rows (the `contact` table only, same row count) in one transaction, with asyncpg
  `executemany` (not COPY) into a fresh copy of the table (`LIKE contact INCLUDING ALL`) on
  PostgreSQL, and with the stdlib `sqlite3` into a freshly migrated file (same pragmas as the
  server) on SQLite.

How to read the ratio API/reference: the share of raw insert speed the API keeps. The API does
far more per contact (HTTP, JSON, validation, address normalisation, lookups, suppression check,
orders, categories, consent ledger with fingerprints) and writes 3-4 rows per contact where the
reference writes one, so a ratio well below 1 is expected; it is meant for comparing versions of
the service on one machine, not as a goal in itself. Client, server and database share the CPUs.

Run: `.venv/bin/python bench/ingest.py [--contacts N] [--runs R]`; the median of R runs is
reported, and the results go to bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
from common import (
    CONFIG,
    DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    LOCALES,
    PG_ADMIN_DATABASE,
    PG_HOST,
    PG_PORT,
    PG_USER,
    ROOT,
    SECRET,
    WORDING,
    mailer,
)
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"

PG_DATABASE = "mailer_bench"

BATCH = 1000
# Server processes and requests in flight; set from the command line in main().
SERVER: dict[str, int] = {"workers": 2, "concurrency": 4}
MAX_BODY = 1024 * 1024  # API.md: bodies over 1 MiB are refused with 413
TARGET_PG = 5000.0  # contacts/s

SERVER_START_TIMEOUT = 60.0  # s
COMMAND_TIMEOUT = 300.0  # s, for migrate and keys create
REQUEST_TIMEOUT = 300.0  # s, for one batch request
LOAD_TIMEOUT = 3600.0  # s, for one timed run

CONTACT_COLUMNS = (
    "id",
    "email",
    "external_id",
    "name",
    "locale",
    "source_channel",
    "source_url",
    "created_at",
    "updated_at",
)

CATEGORIES = ("tea", "herbal-tea", "baby-food")
CHECKOUT_URLS = ("https://shop.example.be/checkout", "https://shop.example.be/fr/checkout")

console = Console()


# ---- data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    bodies: list[bytes]  # one serialised request body per batch
    batch_sizes: list[int]
    warmup: bytes  # a small request sent before the clock starts
    warmup_size: int
    rows: list[tuple[Any, ...]]  # `contact` rows for the reference, in CONTACT_COLUMNS order

    @property
    def contacts(self) -> int:
        return sum(self.batch_sizes)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return ascii_text.lower().replace(" ", "")


def make_contact(i: int, rng: random.Random, now: datetime, tag: str = "c") -> dict[str, Any]:
    """One contact as a shop backend pushes it after a checkout (see tests/factories.py)."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    locale = rng.choice(LOCALES)
    placed_at = now - timedelta(seconds=rng.randint(3600, 2 * 365 * 86400))
    url = rng.choice(CHECKOUT_URLS)
    body: dict[str, Any] = {
        "email": f"{_slug(first)}.{_slug(last)}.{tag}{i}@{rng.choice(DOMAINS)}",
        "external_id": f"cust-{tag}{i}",
        "name": f"{first} {last}",
        "locale": locale,
        "source": {"channel": "checkout", "first_party": True, "url": url},
        "orders": [
            {
                "id": f"SO-{tag}{i}",
                "placed_at": _iso(placed_at),
                "categories": rng.sample(CATEGORIES, rng.randint(1, 2)),
                "marketing_opt_out_offered": True,
                "marketing_opt_out_used": rng.random() < 0.1,
            }
        ],
        "consents": [],
    }
    if rng.random() < 0.5:
        body["consents"].append(
            {
                "purpose": "newsletter",
                "granted": True,
                "captured_at": _iso(placed_at),
                "wording": WORDING[locale],
                "wording_version": "2026-01",
                "channel": "checkout",
                "url": url,
                "checkbox_prechecked": False,
                "capture_method": "checkbox",
                "ip": f"203.0.113.{rng.randint(1, 254)}",
            }
        )
    return body


def contact_row(body: dict[str, Any], now: datetime) -> tuple[Any, ...]:
    """The `contact` row the service stores for this body (email normalised to lower case)."""
    return (
        uuid.uuid4().hex,
        body["email"].lower(),
        body["external_id"],
        body["name"],
        body["locale"],
        body["source"]["channel"],
        body["source"]["url"],
        now,
        now,
    )


def _serialise(contacts: list[dict[str, Any]]) -> bytes:
    body = json.dumps({"contacts": contacts}, separators=(",", ":"), ensure_ascii=False).encode()
    assert len(body) < MAX_BODY, f"a batch body of {len(body)} bytes would be refused (413)"
    return body


def build_workload(total: int, seed: int = 20261127) -> Workload:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    bodies: list[bytes] = []
    sizes: list[int] = []
    rows: list[tuple[Any, ...]] = []
    for start in range(0, total, BATCH):
        contacts = [make_contact(i, rng, now) for i in range(start, min(start + BATCH, total))]
        bodies.append(_serialise(contacts))
        sizes.append(len(contacts))
        rows.extend(contact_row(contact, now) for contact in contacts)
    warm = [make_contact(i, rng, now, tag="w") for i in range(50)]
    return Workload(bodies, sizes, _serialise(warm), len(warm), rows)


# ---- processes -------------------------------------------------------------------------------


def mailer_env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MAILER_DATABASE_URL=database_url,
        MAILER_CONFIG=str(CONFIG),
        MAILER_SECRET_KEYS=SECRET,
        MAILER_DEV="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def prepare(database_url: str) -> str:
    """Migrate the (empty) database and make a shop key; return the key."""
    env = mailer_env(database_url)
    mailer(env, "migrate")
    key = mailer(env, "keys", "create", "--scope", "shop", "--name", "bench").splitlines()[0]
    assert key.startswith("mk_"), f"unexpected key output {key!r}"
    return key.strip()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(database_url: str, log_path: Path) -> Iterator[tuple[str, int]]:
    """A running `python -m mailer serve` on a free loopback port: yields (base URL, pid)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mailer",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(SERVER["workers"]),
            ],
            env=mailer_env(database_url),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_healthy(base, proc, log_path)
            yield base, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}"
                )
            try:
                if client.get(f"{base}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(
        f"the server did not answer /healthz in {SERVER_START_TIMEOUT:.0f} s:\n"
        f"{log_path.read_text()[-4000:]}"
    )


# ---- the API load ----------------------------------------------------------------------------


def _check(body: bytes, expected: int, what: str) -> None:
    """Every item of a batch response must be a 201 (a newly created contact)."""
    results = json.loads(body)["results"]
    if len(results) != expected:
        raise AssertionError(f"{what}: {len(results)} results for {expected} contacts")
    for position, item in enumerate(results):
        if item.get("index") != position or item.get("status") != 201 or not item.get("id"):
            raise AssertionError(f"{what}: item {position} is not a 201: {item}")


async def _load(base: str, key: str, workload: Workload) -> float:
    """Send the warm-up, then every batch with `concurrency` requests in flight; return seconds."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    in_flight = SERVER["concurrency"]
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=REQUEST_TIMEOUT
    ) as client:

        async def post(body: bytes) -> bytes:
            response = await client.post("/api/v1/contacts/batch", content=body)
            if response.status_code != 207:
                raise AssertionError(
                    f"batch answered {response.status_code}: {response.text[:2000]}"
                )
            return response.content

        _check(await post(workload.warmup), workload.warmup_size, "warm-up")
        answers: list[bytes | None] = [None] * len(workload.bodies)
        next_batch = iter(range(len(workload.bodies)))

        async def worker() -> None:
            for index in next_batch:  # shared iterator: each batch is taken once
                answers[index] = await post(workload.bodies[index])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(SERVER["concurrency"])))
        elapsed = time.perf_counter() - started

    for index, (answer, size) in enumerate(zip(answers, workload.batch_sizes, strict=True)):
        assert answer is not None, f"batch {index} got no answer"
        _check(answer, size, f"batch {index}")
    return elapsed


def run_api(database_url: str, workload: Workload, log_path: Path) -> float:
    """Contacts/s of one timed run against a fresh, migrated database."""
    key = prepare(database_url)
    with server(database_url, log_path) as (base, _pid):
        elapsed = asyncio.run(asyncio.wait_for(_load(base, key, workload), LOAD_TIMEOUT))
    return workload.contacts / elapsed


# ---- PostgreSQL ------------------------------------------------------------------------------


def pg_url(database: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


async def _pg_connect(database: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, database=database, timeout=30
    )


async def _pg_recreate(drop_only: bool = False) -> None:
    conn = await _pg_connect(PG_ADMIN_DATABASE)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        if not drop_only:
            await conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    finally:
        await conn.close()


async def _pg_scalar(sql: str) -> Any:
    conn = await _pg_connect(PG_DATABASE)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def _pg_reference(rows: Sequence[tuple[Any, ...]]) -> float:
    """Seconds for one asyncpg executemany of `rows` into a fresh copy of `contact`."""
    conn = await _pg_connect(PG_DATABASE)
    try:
        await conn.execute("DROP TABLE IF EXISTS contact_ref")
        await conn.execute("CREATE TABLE contact_ref (LIKE contact INCLUDING ALL)")
        placeholders = ", ".join(f"${n}" for n in range(1, len(CONTACT_COLUMNS) + 1))
        sql = f"INSERT INTO contact_ref ({', '.join(CONTACT_COLUMNS)}) VALUES ({placeholders})"
        started = time.perf_counter()
        async with conn.transaction():
            await conn.executemany(sql, rows)
        elapsed = time.perf_counter() - started
        count = await conn.fetchval("SELECT count(*) FROM contact_ref")
        assert count == len(rows), f"reference stored {count} rows of {len(rows)}"
        await conn.execute("DROP TABLE contact_ref")
        return elapsed
    finally:
        await conn.close()


def pg_run(workload: Workload, work_dir: Path, run: int) -> tuple[float, float]:
    """(API contacts/s, reference rows/s) of one run on a fresh PostgreSQL database."""
    asyncio.run(_pg_recreate())
    api = run_api(pg_url(PG_DATABASE), workload, work_dir / f"server-pg-{run}.log")
    stored = asyncio.run(_pg_scalar("SELECT count(*) FROM contact"))
    assert stored == workload.contacts + workload.warmup_size, f"{stored} contacts stored"
    reference = len(workload.rows) / asyncio.run(_pg_reference(workload.rows))
    return api, reference


def pg_version() -> str:
    async def version() -> str:
        conn = await _pg_connect(PG_ADMIN_DATABASE)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    return asyncio.run(version())


# ---- SQLite ----------------------------------------------------------------------------------


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def _sqlite_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_reference(path: Path, rows: Sequence[tuple[Any, ...]]) -> float:
    """Seconds for one sqlite3 executemany of `rows` into `contact` of a fresh migrated file."""
    # SQLAlchemy stores UTCDateTime on SQLite as naive UTC text; do the same formatting here.
    text_rows = [(*row[:7], _sqlite_time(row[7]), _sqlite_time(row[8])) for row in rows]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("foreign_keys=ON", "journal_mode=WAL", "synchronous=NORMAL"):
            conn.execute(f"PRAGMA {pragma}")  # what the server sets on each connection
        placeholders = ", ".join("?" for _ in CONTACT_COLUMNS)
        sql = f"INSERT INTO contact ({', '.join(CONTACT_COLUMNS)}) VALUES ({placeholders})"
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(sql, text_rows)
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        (count,) = conn.execute("SELECT count(*) FROM contact").fetchone()
        assert count == len(rows), f"reference stored {count} rows of {len(rows)}"
        return elapsed
    finally:
        conn.close()


def sqlite_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM contact").fetchone()[0])
    finally:
        conn.close()


def sqlite_run(workload: Workload, work_dir: Path, run: int) -> tuple[float, float]:
    """(API contacts/s, reference rows/s) of one run on fresh SQLite files."""
    path = work_dir / f"bench-{run}.db"
    api = run_api(sqlite_url(path), workload, work_dir / f"server-sqlite-{run}.log")
    stored = sqlite_count(path)
    assert stored == workload.contacts + workload.warmup_size, f"{stored} contacts stored"
    ref_path = work_dir / f"reference-{run}.db"
    mailer(mailer_env(sqlite_url(ref_path)), "migrate")
    reference = len(workload.rows) / _sqlite_reference(ref_path, workload.rows)
    return api, reference


# ---- report ----------------------------------------------------------------------------------


@dataclass
class BackendResult:
    backend: str
    api_runs: list[float] = field(default_factory=list)  # contacts/s
    reference_runs: list[float] = field(default_factory=list)  # rows/s

    @property
    def api_median(self) -> float:
        return statistics.median(self.api_runs)

    @property
    def reference_median(self) -> float:
        return statistics.median(self.reference_runs)

    @property
    def ratio(self) -> float:
        return self.api_median / self.reference_median

    def summary(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "api_median": round(self.api_median, 1),
            "api_min": round(min(self.api_runs), 1),
            "api_max": round(max(self.api_runs), 1),
            "reference_median": round(self.reference_median, 1),
            "ratio": round(self.ratio, 4),
        }


def report(results: list[BackendResult], meta: dict[str, Any]) -> None:
    table = Table(title=f"Ingest through POST /api/v1/contacts/batch (nproc {meta['nproc']})")
    table.add_column("backend")
    table.add_column("API contacts/s\nmedian", justify="right")
    table.add_column("API contacts/s\nmin / max", justify="right")
    table.add_column("reference rows/s\nmedian", justify="right")
    table.add_column("ratio\nAPI / ref", justify="right")
    for result in results:
        table.add_row(
            result.backend,
            f"{result.api_median:,.0f}",
            f"{min(result.api_runs):,.0f} / {max(result.api_runs):,.0f}",
            f"{result.reference_median:,.0f}",
            f"{result.ratio:.3f}",
        )
    console.print(table)
    console.print(
        f"{meta['contacts']:,} contacts in batches of {BATCH},"
        f" {meta['concurrency']} requests in flight to {meta['server_workers']} server process(es),"
        f" {meta['runs']} run(s) per backend; reference: executemany of the contact rows"
        " (asyncpg on PostgreSQL, sqlite3 on SQLite)"
    )
    pg = next((r for r in results if r.backend == "postgresql"), None)
    if pg is not None:
        met = "met" if pg.api_median >= TARGET_PG else "NOT met"
        console.print(f"target: >= {TARGET_PG:,.0f} contacts/s on PostgreSQL: {met}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {**meta, "backends": {r.backend: r.summary() for r in results}}
    RESULTS.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    console.print(f"results written to {RESULTS.relative_to(ROOT)}")


# ---- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000, help="contacts per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per backend (median reported)")
    parser.add_argument(
        "--backend",
        choices=("all", "postgresql", "sqlite"),
        default="all",
        help="which backend(s) to measure",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="uvicorn worker processes of the server"
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="requests in flight from the client"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the server logs")
    args = parser.parse_args(argv)
    if min(args.contacts, args.runs, args.workers, args.concurrency) < 1:
        parser.error("--contacts, --runs, --workers and --concurrency must be positive")
    SERVER.update(workers=args.workers, concurrency=args.concurrency)

    with console.status("generating contacts"):
        workload = build_workload(args.contacts)
    largest = max(len(body) for body in workload.bodies)
    console.print(
        f"{workload.contacts:,} contacts in {len(workload.bodies)} bodies"
        f" (largest {largest / 1024:,.0f} KiB, limit {MAX_BODY // 1024} KiB)"
    )

    backends: list[tuple[str, Callable[[Workload, Path, int], tuple[float, float]]]] = []
    if args.backend in ("all", "postgresql"):
        backends.append(("postgresql", pg_run))
    if args.backend in ("all", "sqlite"):
        backends.append(("sqlite", sqlite_run))

    meta: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "contacts": workload.contacts,
        "batch": BATCH,
        "concurrency": SERVER["concurrency"],
        "server_workers": SERVER["workers"],
        "runs": args.runs,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "reference": "executemany of the contact rows, one transaction "
        "(asyncpg into LIKE contact INCLUDING ALL; sqlite3 into a migrated file)",
    }
    results: list[BackendResult] = []
    work_dir = Path(tempfile.mkdtemp(prefix="mailer-bench-"))
    try:
        if any(name == "postgresql" for name, _ in backends):
            meta["postgresql"] = pg_version()
        for name, run_once in backends:
            result = BackendResult(name)
            for run in range(1, args.runs + 1):
                api, reference = run_once(workload, work_dir, run)
                result.api_runs.append(round(api, 1))
                result.reference_runs.append(round(reference, 1))
                console.print(
                    f"{name} run {run}/{args.runs}: API {api:,.0f} contacts/s,"
                    f" reference {reference:,.0f} rows/s"
                )
            results.append(result)
    finally:
        if any(name == "postgresql" for name, _ in backends):
            asyncio.run(_pg_recreate(drop_only=True))
        if args.keep_logs:
            console.print(f"server logs kept in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    report(results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
