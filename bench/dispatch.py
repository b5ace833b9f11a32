"""Dispatch benchmark: messages per second from the dispatcher into Postfix's `smtp-sink`.

What is measured (PostgreSQL only, everything on loopback):

* Reference: Postfix's `smtp-source` into `smtp-sink` (Debian package `postfix`, installed
  non-interactively when `smtp-sink` is missing), `-d -s C -l SIZE -m N`: N messages over C
  reused connections, where C is `[delivery] connections` (8 by default: the dispatcher's pool)
  and SIZE is the median byte size of the messages our composer makes for this campaign
  (measured first by composing a sample). The clock (time.perf_counter) covers the whole
  `smtp-source` process. This is what the relay and the loopback can take from a C client that
  does nothing but SMTP; one reference run precedes each of our runs.
* Ours: a fresh, migrated database (`mailer_bench_dispatch`, dropped at the end) with N
  personalised contacts (names, nl/fr/en mix), each with a newsletter consent, loaded through
  `ingest_contacts` in batches of 1,000 (so contact_hash and the consent ledger are real), then
  ANALYZE. Per run, a new campaign (`newsletter.html`, purpose newsletter) and a FRESH child
  process (so its peak RSS is that of the sending process only), configured the way an
  operator would (`Settings.from_env`: MAILER_SMTP_HOST/PORT point at the sink, MAILER_CONFIG
  at a copy of mailer.example.toml whose frequency cap is lifted so that every run sends to
  everyone): `start_run` (materialise, timed on its own), then `services.dispatcher().run(...)`
  (the dispatch, timed), with a SystemClock. The run must end with N deliveries, all `sent`,
  or the benchmark fails. Reported: msg/s of the dispatch (median, min/max), the ratio
  ours/smtp-source, and the child's peak RSS. That is VmHWM, the child's own high-water mark:
  its ru_maxrss would include the parent's peak, which Linux hands down to a child at exec.
* Memory flatness: one more child sends to N/10 contacts (run before the other contacts are
  loaded); the report gives RSS(N) / RSS(N/10), with the largest RSS of the N runs.
* `--profile FILE` adds one run (not counted in the figures) during whose dispatch py-spy
  samples the child (`--idle --nonblocking`, raw collapsed stacks written to FILE); the report
  then splits the wall time into compose, SMTP client, database, idle and the rest, per message.

Targets: ours >= 0.25 of smtp-source's rate; RSS(N) within 20% of RSS(N/10). smtp-source, the
dispatcher, PostgreSQL and smtp-sink share the machine's CPUs, as they would on a small host.

Run: `.venv/bin/python bench/dispatch.py [--recipients N] [--runs R] [--profile FILE]`; results
go to bench/results/dispatch.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
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
    TEMPLATES,
    WORDING,
    mailer,
)
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.clock import SystemClock
from campaigns.context import Context
from campaigns.evidence.contacts import IngestResult, ingest_contacts
from campaigns.evidence.inputs import ContactIn
from campaigns.models import Campaign
from campaigns.sending.campaigns import create_campaign
from campaigns.sending.inputs import CampaignIn
from campaigns.sending.lifecycle import start_run
from mailer.delivery.compose import Recipient
from mailer.delivery.dispatcher import send_run
from mailer.delivery.footer import MailBasis
from mailer.services import Services
from mailer.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

RESULTS = Path(__file__).resolve().parent / "results" / "dispatch.json"

PG_DATABASE = "mailer_bench_dispatch"
PUBLIC_URL = "https://news.ollekebolleke.be"

LOAD_BATCH = 1000
SIZE_SAMPLE = 200  # messages composed to find the median size
SOURCE_FROM = "bench@example.be"
SOURCE_TO = "sink@example.be"
FREQUENCY_CAP = "frequency_cap = { max = 1000, days = 7 }"

TARGET_RATIO = 0.25  # ours / smtp-source
TARGET_RSS_RATIO = 1.2  # RSS(N) / RSS(N/10)
KNOWN = {  # figures measured on this machine before, for context
    "smtp-source into smtp-sink": 22_000,
    "hand-written EmailMessage + aiosmtplib loop": 530,
    "django-newsletter": 200,
}

APT_TIMEOUT = 900.0  # s, for the postfix install and for waiting on a running apt/dpkg
COMMAND_TIMEOUT = 300.0  # s, migrate
SINK_START_TIMEOUT = 10.0  # s
PROFILER_START_TIMEOUT = 30.0  # s


def child_timeout(recipients: int) -> float:
    """Seconds one child may take: generous (10 msg/s), but bounded."""
    return 300.0 + recipients / 10


@cache
def console() -> Console:
    """The parent's console; rich is imported there only, so that the sending child's peak
    RSS is the service's own."""
    from rich.console import Console

    return Console()


# ---- Postfix: smtp-sink and smtp-source ------------------------------------------------------


def _apt_busy() -> bool:
    patterns = (["-x", "apt-get"], ["-x", "apt"], ["-x", "dpkg"])
    return any(
        subprocess.run(["pgrep", *p], capture_output=True, check=False).returncode == 0
        for p in patterns
    )


def ensure_postfix() -> None:
    """Install the `postfix` package (for smtp-sink and smtp-source) when they are missing;
    wait for an apt/dpkg that is already running instead of racing it."""
    if shutil.which("smtp-sink") and shutil.which("smtp-source"):
        return
    deadline = time.monotonic() + APT_TIMEOUT
    with console().status("waiting for a running apt-get/dpkg to finish"):
        while _apt_busy():
            if time.monotonic() > deadline:
                raise RuntimeError(f"apt-get/dpkg still running after {APT_TIMEOUT:.0f} s")
            time.sleep(2)
    if shutil.which("smtp-sink") and shutil.which("smtp-source"):
        return
    console().print("installing postfix (for smtp-sink and smtp-source)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(
        ["debconf-set-selections"],
        input=b"postfix postfix/main_mailer_type select No configuration\n",
        check=True,
        timeout=60,
    )
    install = ["apt-get", "install", "-y", "-qq", "postfix"]
    if subprocess.run(install, env=env, check=False, timeout=APT_TIMEOUT).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=APT_TIMEOUT)
        subprocess.run(install, env=env, check=True, timeout=APT_TIMEOUT)
    if not (shutil.which("smtp-sink") and shutil.which("smtp-source")):
        raise RuntimeError("postfix is installed but smtp-sink/smtp-source are not on PATH")


def postfix_version() -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "postfix"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return done.stdout.strip() or "unknown"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def smtp_sink() -> Iterator[int]:
    """A running `smtp-sink` on a free loopback port (discards every message): yields the
    port; the process is stopped on the way out."""
    port = free_port()
    user = "root" if os.geteuid() == 0 else ""
    command = ["smtp-sink", *(["-u", user] if user else []), f"127.0.0.1:{port}", "1024"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + SINK_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                error = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"smtp-sink exited with {proc.returncode}: {error}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"220"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"smtp-sink did not answer in {SINK_START_TIMEOUT:.0f} s")
            time.sleep(0.05)
        yield port
    finally:
        _stop(proc)


def smtp_source_seconds(port: int, size: int, messages: int, sessions: int) -> float:
    """Seconds for `smtp-source` to send `messages` of `size` bytes over `sessions`
    connections."""
    command = [
        "smtp-source", "-d", "-s", str(sessions), "-l", str(size), "-m", str(messages),
        "-f", SOURCE_FROM, "-t", SOURCE_TO, f"127.0.0.1:{port}",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=300 + messages / 100
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"smtp-source exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed


# ---- PostgreSQL ------------------------------------------------------------------------------


def pg_url(database: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


async def _pg_admin(*statements: str) -> str:
    conn = await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, database=PG_ADMIN_DATABASE, timeout=30
    )
    try:
        for statement in statements:
            await conn.execute(statement, timeout=COMMAND_TIMEOUT)
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def pg_recreate(drop_only: bool = False) -> str:
    """Drop (and create) the benchmark database; return the server version."""
    statements = [f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)']
    if not drop_only:
        statements.append(f'CREATE DATABASE "{PG_DATABASE}"')
    return asyncio.run(_pg_admin(*statements))


async def _pg_execute(*statements: str) -> None:
    conn = await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, database=PG_DATABASE, timeout=30
    )
    try:
        for statement in statements:
            await conn.execute(statement, timeout=COMMAND_TIMEOUT)
    finally:
        await conn.close()


# ---- configuration ---------------------------------------------------------------------------


def write_config(
    path: Path, batch_size: int | None, connections: int | None, processes: int
) -> None:
    """mailer.example.toml with the frequency cap lifted (and delivery overrides, if any)."""
    text = CONFIG.read_text(encoding="utf-8")
    text, n = re.subn(r"(?m)^frequency_cap = \{[^}]*\}", FREQUENCY_CAP, text)
    assert n == 1, "mailer.example.toml has no frequency_cap line to replace"
    overrides = (("batch_size", batch_size), ("connections", connections), ("processes", processes))
    for key, value in overrides:
        if value is not None:
            text, n = re.subn(rf"(?m)^{key} = \d+", f"{key} = {value}", text)
            assert n == 1, f"mailer.example.toml has no [delivery] {key} line to replace"
    path.write_text(text, encoding="utf-8")


def bench_env(config_path: Path, smtp_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MAILER_DATABASE_URL=pg_url(PG_DATABASE),
        MAILER_CONFIG=str(config_path),
        MAILER_SECRET_KEYS=SECRET,
        MAILER_DEV="1",
        MAILER_PUBLIC_URL=PUBLIC_URL,
        MAILER_SMTP_HOST="127.0.0.1",
        MAILER_SMTP_PORT=str(smtp_port),
        MAILER_SMTP_TLS="none",
        MAILER_TEMPLATES_DIR=str(TEMPLATES),
        PYTHONUNBUFFERED="1",
    )
    for name in ("MAILER_SMTP_USERNAME", "MAILER_SMTP_PASSWORD", "MAILER_DKIM_SELECTOR"):
        env.pop(name, None)
    env.pop("MAILER_DKIM_KEY_FILE", None)
    return env


# ---- data ------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return ascii_text.lower().replace(" ", "")


def make_contact(i: int, now: datetime) -> dict[str, Any]:
    """One checkout contact with a valid newsletter consent (deterministic per index)."""
    rng = random.Random(i)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    locale = rng.choice(LOCALES)
    captured = now - timedelta(seconds=rng.randint(3600, 2 * 365 * 86400))
    url = "https://shop.example.be/checkout"
    return {
        "email": f"{_slug(first)}.{_slug(last)}.{i}@{rng.choice(DOMAINS)}",
        "external_id": f"cust-{i}",
        "name": f"{first} {last}",
        "locale": locale,
        "source": {"channel": "checkout", "first_party": True, "url": url},
        "orders": [],
        "consents": [
            {
                "purpose": "newsletter",
                "granted": True,
                "captured_at": captured.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "wording": WORDING[locale],
                "wording_version": "2026-01",
                "channel": "checkout",
                "url": url,
                "checkbox_prechecked": False,
                "capture_method": "checkbox",
                "ip": f"203.0.113.{rng.randint(1, 254)}",
            }
        ],
    }


async def ingest(
    session: AsyncSession, items: list[tuple[int, ContactIn]], ctx: Context
) -> list[IngestResult]:
    return await ingest_contacts(session, items, ctx)


async def _load(settings: Settings, start: int, stop: int) -> None:
    services = Services.build(settings, SystemClock())
    ctx = services.context
    try:
        for first in range(start, stop, LOAD_BATCH):
            now = ctx.clock.now()
            items = [
                (i - first, ContactIn.model_validate(make_contact(i, now)))
                for i in range(first, min(first + LOAD_BATCH, stop))
            ]
            outcomes = await services.db.transaction(partial(ingest, items=items, ctx=ctx))
            refused = [o for o in outcomes if o.result != "created" or o.refused]
            if refused:
                raise AssertionError(f"contact {first + refused[0].index} not created cleanly")
    finally:
        await services.close()
    await _pg_execute("ANALYZE")


def load_contacts(settings: Settings, start: int, stop: int) -> float:
    """Load contacts [start, stop); return the seconds it took."""
    started = time.perf_counter()
    asyncio.run(_load(settings, start, stop))
    return time.perf_counter() - started


async def _new_campaign(settings: Settings, name: str) -> str:
    services = Services.build(settings, SystemClock())
    try:
        body = CampaignIn(
            name=name, purpose="newsletter", subject="Nieuws van Olleke Bolleke",
            template="newsletter.html",
        )  # fmt: skip
        created = await services.db.transaction(
            lambda s: create_campaign(s, body, services.context, TEMPLATES)
        )
        return created.id
    finally:
        await services.close()


def new_campaign(settings: Settings, name: str) -> str:
    return asyncio.run(_new_campaign(settings, name))


async def _message_sizes(settings: Settings, campaign_id: str, first_delivery: int) -> list[int]:
    """Byte sizes of SIZE_SAMPLE messages composed by the dispatcher's own composer for the
    first contacts (as the dispatcher would compose them, consent basis)."""
    services = Services.build(settings, SystemClock())
    try:
        async with services.db.sessions() as session:
            campaign = await session.get(Campaign, campaign_id)
            assert campaign is not None
            rows = (
                await session.execute(
                    sa.text(
                        "SELECT c.id, c.email, c.name, c.locale, e.captured_at"
                        " FROM contact c JOIN consent_event e ON e.contact_id = c.id"
                        " WHERE e.purpose = 'newsletter' ORDER BY c.external_id LIMIT :n"
                    ),
                    {"n": SIZE_SAMPLE},
                )
            ).all()
        composer = services.composers.for_campaign(campaign)
        return [
            len(
                composer.compose(
                    Recipient(
                        delivery_id=first_delivery + k,
                        contact_id=row.id,
                        email=row.email,
                        name=row.name,
                        locale=row.locale,
                        basis=MailBasis("consent", row.captured_at, "newsletter"),
                    )
                ).data
            )
            for k, row in enumerate(rows)
        ]
    finally:
        await services.close()


def message_sizes(settings: Settings, campaign_id: str, first_delivery: int) -> list[int]:
    return asyncio.run(_message_sizes(settings, campaign_id, first_delivery))


# ---- the sending child -----------------------------------------------------------------------


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM, the high-water mark of its address space.

    Not ru_maxrss: Linux carries the parent's peak RSS over into a child's ru_maxrss at exec
    (subprocess spawns with vfork, so the "old" address space at exec is the parent's), and the
    parent here holds the loading; ru_maxrss is kept in the results for comparison only.
    """
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return ru_maxrss_mb()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else ru_maxrss_mb()


@contextmanager
def profiler(out: Path | None) -> Iterator[None]:
    """py-spy sampling this process (wall time, idle included) while the block runs."""
    if out is None:
        yield
        return
    spy = Path(sys.executable).with_name("py-spy")
    log = Path(tempfile.mkstemp(prefix="py-spy-", suffix=".log")[1])
    command = [
        str(spy), "record", "--pid", str(os.getpid()), "--format", "raw", "-o", str(out),
        "--rate", "250", "--idle", "--nonblocking", "--subprocesses",
    ]  # fmt: skip
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + PROFILER_START_TIMEOUT
        while b"Sampling process" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"py-spy did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.unlink(missing_ok=True)


async def child_send(campaign_id: str, expected: int, profile: Path | None) -> dict[str, Any]:
    """Fire one run of the campaign and send it all; verify that all `expected` were sent."""
    result: dict[str, Any] = {"rss_start_mb": round(peak_rss_mb(), 1)}
    settings = Settings.from_env()
    services = Services.build(settings, SystemClock())
    ctx = services.context
    try:
        scheduled_for = ctx.clock.now()
        started = time.perf_counter()
        run_id = await services.db.transaction(
            lambda s: start_run(s, campaign_id, scheduled_for, ctx, allowed=("draft",))
        )
        result["materialise_s"] = time.perf_counter() - started
        if run_id is None:
            raise AssertionError("start_run fired nothing (the campaign is not a fresh draft?)")
        result["rss_after_materialise_mb"] = round(peak_rss_mb(), 1)

        dispatcher = services.dispatcher()
        try:
            with profiler(profile):
                cpu_before = _cpu_seconds()
                started = time.perf_counter()
                progress = await asyncio.wait_for(
                    send_run(dispatcher, campaign_id, run_id), child_timeout(expected)
                )
                result["dispatch_s"] = time.perf_counter() - started
                # CPU of the sending processes (this one and its helpers) per message: what
                # contention on a shared machine does not change much.
                result["cpu_us_per_message"] = (_cpu_seconds() - cpu_before) / expected * 1e6
        finally:
            await dispatcher.close()
        result["rss_peak_mb"] = round(peak_rss_mb(), 1)
        result["ru_maxrss_mb"] = round(ru_maxrss_mb(), 1)
        # Helper sending processes: the largest peak among them (an upper bound: a child's
        # ru_maxrss starts from its parent's at exec).
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        result["helpers_rss_peak_mb"] = round(children, 1)

        async with services.db.sessions() as session:
            rows = await session.execute(
                sa.text(
                    "SELECT status, count(*) FROM delivery"
                    " WHERE campaign_id = :c AND run = :r GROUP BY status"
                ),
                {"c": campaign_id, "r": run_id},
            )
            statuses = {str(status): int(n) for status, n in rows}
            run_status = (
                await session.execute(
                    sa.text("SELECT status FROM campaign_run WHERE id = :r"), {"r": run_id}
                )
            ).scalar_one()
        result.update(
            run_id=run_id,
            sent_by_this_process=progress.sent,
            failed=progress.failed,
            retrying=progress.retrying,
            skipped=progress.skipped,
            statuses=statuses,
            run_status=run_status,
            batch_size=ctx.config.delivery.batch_size,
            connections=ctx.config.delivery.connections,
            processes=ctx.config.delivery.processes,
        )
        # With helper processes, `progress` counts this process's share only.
        if statuses != {"sent": expected} or run_status != "done":
            raise AssertionError(
                f"expected {expected} deliveries, all sent, and the run done; got statuses"
                f" {statuses}, progress {progress}, run {run_status}"
            )
        return result
    finally:
        await services.close()


def run_child(
    env: dict[str, str], campaign_id: str, expected: int, profile: Path | None = None
) -> dict[str, Any]:
    """Run this file in a fresh process that sends one run; return the JSON it prints last."""
    command = [
        sys.executable, __file__, "--child", "--campaign", campaign_id,
        "--expected", str(expected),
    ]  # fmt: skip
    if profile is not None:
        command += ["--profile-out", str(profile)]
    try:
        done = subprocess.run(
            command,
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=child_timeout(expected) + 120,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed the child
        raise RuntimeError(f"the sending child took longer than {exc.timeout:.0f} s") from exc
    if done.returncode != 0:
        raise RuntimeError(
            f"the sending child exited {done.returncode}:\n{done.stdout[-2000:]}"
            f"{done.stderr[-6000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ---- the profile -----------------------------------------------------------------------------

CATEGORIES = (
    "compose (templates, MIME, tokens)",
    "SMTP client (aiosmtplib, pool)",
    "database (SQLAlchemy, asyncpg)",
    "idle (waiting for I/O)",
    "event loop and other",
)


def _function(frame: str) -> str:
    """`func (pkg/mod.py:12)` -> `func (pkg/mod.py)`: samples counted per function."""
    name, _, where = frame.partition(" (")
    where = where.removesuffix(")")
    file, _, line = where.rpartition(":")
    return f"{name} ({file if line.isdigit() else where})"


def categorise(frames: Sequence[str]) -> str:
    """Which part of the work one sampled stack (root first) belongs to."""
    joined = ";".join(frames)
    leaf = frames[-1] if frames else ""
    if "mailer/delivery/compose.py" in joined or "mailer/delivery/mime.py" in joined:
        return CATEGORIES[0]
    if "aiosmtplib/" in joined or "mailer/delivery/pool.py" in joined:
        return CATEGORIES[1]
    if any(p in joined for p in ("sqlalchemy/", "asyncpg/", "greenlet", "campaigns/")):
        return CATEGORIES[2]
    if "select (" in leaf and "selectors.py" in leaf:
        return CATEGORIES[3]
    # asyncpg's protocol is compiled: its data_received shows as a bare _read_ready leaf (the
    # SMTP client's protocol is Python, so its frames would show and be counted above).
    if "_read_ready" in leaf and "selector_events.py" in leaf:
        return CATEGORIES[2]
    # Templates run as `root (newsletter.html:12)` frames; a stack that starts there lost its
    # callers (sampling without pausing the process): it is still composition.
    if frames and frames[0].startswith("root (") and ".py:" not in frames[0]:
        return CATEGORIES[0]
    return CATEGORIES[4]


def _main_thread(frames: Sequence[str]) -> bool:
    """Stacks of the event loop's thread: not the idle workers of the default executor
    (asyncio resolves the relay's name there), nor the profiler's own start and stop."""
    if frames and frames[0].startswith("Thread._bootstrap ("):
        return False
    return not any(f.startswith("profiler (") and "dispatch.py" in f for f in frames)


def summarise_profile(path: Path, seconds: float, messages: int) -> dict[str, Any]:
    """Shares of the event loop thread's wall time by part, and the hottest functions, from
    py-spy raw output (idle included); microseconds per message from the timed dispatch."""
    per_category: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = other_threads = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not _main_thread(frames):
            other_threads += count
            continue
        total += count
        per_category[categorise(frames)] += count
        if frames:
            self_time[_function(frames[-1])] += count
        for function in {_function(f) for f in frames}:
            inclusive[function] += count
    if total == 0:
        return {"samples": 0}
    us_per_message = seconds * 1e6 / messages

    def share(n: int) -> dict[str, float]:
        return {"share": round(n / total, 4), "us_per_message": round(n / total * us_per_message)}

    project = [
        (frame, n)
        for frame, n in inclusive.most_common()
        if any(p in frame for p in ("mailer/", "campaigns/", "jinja2/", ".html)", ".txt)"))
    ]
    return {
        "samples": total,
        "samples_other_threads": other_threads,
        "us_per_message": round(us_per_message),
        "categories": {c: share(per_category[c]) for c in CATEGORIES},
        "top_self": [{"frame": f, **share(n)} for f, n in self_time.most_common(15)],
        "top_inclusive_project": [{"frame": f, **share(n)} for f, n in project[:25]],
    }


# ---- report ----------------------------------------------------------------------------------


@dataclass
class Results:
    recipients: int
    small_recipients: int
    sizes: list[int] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)  # msg/s
    runs: list[dict[str, Any]] = field(default_factory=list)
    small: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)

    @property
    def rates(self) -> list[float]:
        return [self.recipients / r["dispatch_s"] for r in self.runs]

    @property
    def ratio(self) -> float:
        return statistics.median(self.rates) / statistics.median(self.reference)

    @property
    def rss(self) -> float:
        return max(float(r["rss_peak_mb"]) for r in self.runs)

    @property
    def rss_ratio(self) -> float:
        small: float = self.small["rss_peak_mb"]
        return self.rss / small

    def summary(self) -> dict[str, Any]:
        rates = self.rates
        return {
            "message_bytes": {
                "median": int(statistics.median(self.sizes)),
                "min": min(self.sizes),
                "max": max(self.sizes),
                "sample": len(self.sizes),
            },
            "reference_msg_per_s": {
                "runs": [round(r, 1) for r in self.reference],
                "median": round(statistics.median(self.reference), 1),
            },
            "ours_msg_per_s": {
                "runs": [round(r, 1) for r in rates],
                "median": round(statistics.median(rates), 1),
                "min": round(min(rates), 1),
                "max": round(max(rates), 1),
            },
            "ratio_ours_to_reference": round(self.ratio, 4),
            "materialise_s": [round(r["materialise_s"], 3) for r in self.runs],
            "rss_peak_mb_at_n": [r["rss_peak_mb"] for r in self.runs],
            "rss_peak_mb_at_n_over_10": self.small["rss_peak_mb"],
            "rss_ratio": round(self.rss_ratio, 3),
            "small_run_msg_per_s": round(self.small_recipients / self.small["dispatch_s"], 1),
            "run_details": self.runs,
            "small_run": self.small,
            "targets": {
                f"ratio >= {TARGET_RATIO}": self.ratio >= TARGET_RATIO,
                f"rss ratio <= {TARGET_RSS_RATIO}": self.rss_ratio <= TARGET_RSS_RATIO,
            },
            "known_figures_msg_per_s": KNOWN,
            **({"profile": self.profile} if self.profile else {}),
        }


def report(results: Results, meta: dict[str, Any]) -> None:
    from rich.table import Table

    n, small = results.recipients, results.small_recipients
    rates = results.rates
    table = Table(title=f"Dispatch into smtp-sink (PostgreSQL, nproc {meta['nproc']})")
    table.add_column("measure")
    table.add_column("median", justify="right")
    table.add_column("min / max", justify="right")
    table.add_row(
        f"smtp-source msg/s ({meta['connections']} sessions, {meta['smtp_source_bytes']} B)",
        f"{statistics.median(results.reference):,.0f}",
        f"{min(results.reference):,.0f} / {max(results.reference):,.0f}",
    )
    table.add_row(
        f"dispatcher msg/s ({n:,} recipients)",
        f"{statistics.median(rates):,.0f}",
        f"{min(rates):,.0f} / {max(rates):,.0f}",
    )
    table.add_row("ratio dispatcher / smtp-source", f"{results.ratio:.3f}", "")
    cpu = [r["cpu_us_per_message"] for r in results.runs]
    table.add_row(
        "CPU us per message (all sending processes)",
        f"{statistics.median(cpu):.0f}",
        f"{min(cpu):.0f} / {max(cpu):.0f}",
    )
    materialise = [r["materialise_s"] for r in results.runs]
    table.add_row(
        "materialise (start_run) s",
        f"{statistics.median(materialise):.2f}",
        f"{min(materialise):.2f} / {max(materialise):.2f}",
    )
    start = [r["rss_start_mb"] for r in results.runs]
    table.add_row(
        "child RSS MiB after start-up (imports)",
        f"{statistics.median(start):.1f}",
        f"{min(start):.1f} / {max(start):.1f}",
    )
    rss = [r["rss_peak_mb"] for r in results.runs]
    table.add_row(
        f"child peak RSS MiB at {n:,}",
        f"{statistics.median(rss):.1f}",
        f"{min(rss):.1f} / {max(rss):.1f}",
    )
    table.add_row(
        f"child peak RSS MiB at {small:,}",
        f"{results.small['rss_peak_mb']:.1f}",
        f"({small / results.small['dispatch_s']:,.0f} msg/s)",
    )
    table.add_row(f"RSS({n:,}) / RSS({small:,}) (largest)", f"{results.rss_ratio:.3f}", "")
    helpers = [r.get("helpers_rss_peak_mb", 0.0) for r in results.runs]
    if meta.get("processes", 1) > 1:
        table.add_row(
            f"helper processes' peak RSS MiB at {n:,} (upper bound)",
            f"{statistics.median(helpers):.1f}",
            f"{min(helpers):.1f} / {max(helpers):.1f}",
        )
    console().print(table)
    console().print(
        f"{meta['runs']} run(s), batch_size {meta['batch_size']}, {meta['connections']}"
        f" connections, {meta.get('processes', 1)} sending processes;"
        f" message size median {meta['smtp_source_bytes']} B"
        f" (min {min(results.sizes)}, max {max(results.sizes)}); load of {n:,} contacts took"
        f" {meta['load_s']:.0f} s"
    )
    met = "met" if results.ratio >= TARGET_RATIO else "NOT met"
    console().print(f"target: dispatcher >= {TARGET_RATIO} x smtp-source: {met}")
    met = "met" if results.rss_ratio <= TARGET_RSS_RATIO else "NOT met"
    console().print(f"target: RSS({n:,}) <= {TARGET_RSS_RATIO} x RSS({small:,}): {met}")
    console().print(
        "known figures on this machine (msg/s): "
        + "; ".join(f"{name} ~{rate:,}" for name, rate in KNOWN.items())
    )
    if results.profile.get("samples"):
        print_profile(results.profile)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {**meta, **results.summary()}
    RESULTS.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    console().print(f"results written to {RESULTS.relative_to(ROOT)}")


def print_profile(profile: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"Where the dispatch time goes (py-spy, {profile['samples']:,} samples,"
        f" {profile['us_per_message']} us per message)"
    )
    table.add_column("part")
    table.add_column("share", justify="right")
    table.add_column("us / message", justify="right")
    for name, value in profile["categories"].items():
        table.add_row(name, f"{value['share']:.1%}", f"{value['us_per_message']}")
    console().print(table)
    hot = Table(title="Hottest functions (self time)")
    hot.add_column("function")
    hot.add_column("share", justify="right")
    for item in profile["top_self"][:12]:
        hot.add_row(item["frame"], f"{item['share']:.1%}")
    console().print(hot)
    inc = Table(title="Project and template code (inclusive time)")
    inc.add_column("function")
    inc.add_column("share", justify="right")
    inc.add_column("us / message", justify="right")
    for item in profile["top_inclusive_project"][:18]:
        inc.add_row(item["frame"], f"{item['share']:.1%}", f"{item['us_per_message']}")
    console().print(inc)


# ---- main ------------------------------------------------------------------------------------


def bench(args: argparse.Namespace, work: Path) -> tuple[Results, dict[str, Any]]:
    n, small = args.recipients, max(1, args.recipients // 10)
    config_path = work / "mailer.toml"
    write_config(config_path, args.batch_size, args.connections, args.processes)
    results = Results(n, small)
    meta: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "recipients": n,
        "small_recipients": small,
        "runs": args.runs,
    }
    with smtp_sink() as port:
        env = bench_env(config_path, port)
        settings = Settings.from_env(env)
        delivery = settings.business.delivery
        meta.update(
            postgresql=pg_recreate(),
            postfix=postfix_version(),
            batch_size=delivery.batch_size,
            connections=delivery.connections,
            processes=delivery.processes,
            rate_per_second=delivery.rate_per_second,
            frequency_cap=FREQUENCY_CAP,
        )
        mailer(env, "migrate", timeout=COMMAND_TIMEOUT)
        with console().status(f"loading {small:,} contacts"):
            load_s = load_contacts(settings, 0, small)

        campaign = new_campaign(settings, "Bench: sizes")
        results.sizes = message_sizes(settings, campaign, first_delivery=n * (args.runs + 2))
        size = int(statistics.median(results.sizes))
        meta["smtp_source_bytes"] = size
        console().print(
            f"composed {len(results.sizes)} messages: median {size} B"
            f" (min {min(results.sizes)}, max {max(results.sizes)})"
        )

        with console().status(f"sending to {small:,} (memory baseline)"):
            results.small = run_child(env, new_campaign(settings, "Bench: small"), small)
        console().print(
            f"N/10 run: {small:,} sent in {results.small['dispatch_s']:.2f} s"
            f" ({small / results.small['dispatch_s']:,.0f} msg/s),"
            f" peak RSS {results.small['rss_peak_mb']:.1f} MiB"
        )
        with console().status(f"loading {n - small:,} more contacts"):
            load_s += load_contacts(settings, small, n)
        meta["load_s"] = round(load_s, 1)
        console().print(f"{n:,} contacts loaded in {load_s:.0f} s")

        for run in range(1, args.runs + 1):
            with console().status(f"run {run}/{args.runs}: smtp-source"):
                seconds = smtp_source_seconds(port, size, n, delivery.connections)
            results.reference.append(n / seconds)
            campaign = new_campaign(settings, f"Bench: run {run}")
            with console().status(f"run {run}/{args.runs}: dispatching {n:,}"):
                measured = run_child(env, campaign, n)
            results.runs.append(measured)
            console().print(
                f"run {run}/{args.runs}: smtp-source {n / seconds:,.0f} msg/s;"
                f" dispatcher {n / measured['dispatch_s']:,.0f} msg/s"
                f" ({measured['cpu_us_per_message']:.0f} us CPU per message)"
                f" ({measured['dispatch_s']:.1f} s, materialise {measured['materialise_s']:.2f}"
                f" s), peak RSS {measured['rss_peak_mb']:.1f} MiB"
            )

        if args.profile is not None:
            out = args.profile.resolve()
            out.parent.mkdir(parents=True, exist_ok=True)
            campaign = new_campaign(settings, "Bench: profile")
            with console().status(f"profiled run: dispatching {n:,} under py-spy"):
                profiled = run_child(env, campaign, n, profile=out)
            results.profile = summarise_profile(out, profiled["dispatch_s"], n)
            results.profile.update(
                file=str(out),
                msg_per_s_under_profiler=round(n / profiled["dispatch_s"], 1),
            )
            console().print(
                f"profiled run (not counted): {n / profiled['dispatch_s']:,.0f} msg/s;"
                f" raw stacks in {out}"
            )
    return results, meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--recipients", type=int, default=50_000, help="recipients per run")
    parser.add_argument("--runs", type=int, default=3, help="runs (median reported)")
    parser.add_argument("--batch-size", type=int, help="override [delivery] batch_size")
    parser.add_argument("--connections", type=int, help="override [delivery] connections")
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="override [delivery] processes (default: one per CPU)",
    )
    parser.add_argument(
        "--profile", type=Path, help="one extra run under py-spy; raw stacks to this file"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--campaign", help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = asyncio.run(child_send(args.campaign, args.expected, args.profile_out))
        print(json.dumps(result))
        return 0
    if min(args.recipients, args.runs) < 1:
        parser.error("--recipients and --runs must be positive")
    for name in ("batch_size", "connections", "processes"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")

    ensure_postfix()
    work = Path(tempfile.mkdtemp(prefix="mailer-bench-dispatch-"))
    try:
        results, meta = bench(args, work)
    finally:
        pg_recreate(drop_only=True)
        shutil.rmtree(work, ignore_errors=True)
    report(results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
