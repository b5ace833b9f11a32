"""Audience benchmark: counting and materialising one campaign's audience over N contacts.

What is measured, per backend (PostgreSQL, then SQLite):

* Data: a fresh database (PostgreSQL: a database of our own; SQLite: a file in a temporary
  directory), migrated with the real `python -m mailer migrate`, then loaded directly in SQL
  (INSERT ... SELECT over a generated series; the API is measured by bench/ingest.py) with a
  realistic mix over every table the audience query reads: about 40% of the contacts with a
  newsletter consent and 25% with a promotions consent (some invalid, some withdrawn later,
  a few granted again), half with one or two shop orders over four years (so many are past the
  24-month soft-opt-in window; some cancelled, some without an opt-out offered, about 10% of
  the contacts used the opt-out), categories from mailer.example.toml, 2% suppressed (plus
  lifted entries and entries of erased contacts), 5% mailed in the last 7 days (3% twice,
  which is the frequency cap) and 30% mailed three weeks ago. The evidence goes in behind the
  service's back, so the projections the audience query reads
  (campaigns/evidence/projections.py) are then filled from it with the migration's own
  statements. Then ANALYZE.
* Each run is a fresh Python process (so its peak RSS is that of the measurement only, not of
  the loading) with the service's own engine (`Services.build`) and a FixedClock at NOW, the
  moment the generated data is relative to. On one session it times, in this order:
  - reference: `SELECT count(*) FROM contact`, one plain pass over the contacts;
  - count: `audience_counts` of a draft campaign (purpose "promotions", categories ["tea"])
    made with `create_campaign`: eligible contacts by basis and the others by reason;
  - materialise: `materialise` of that campaign (one INSERT ... SELECT of a delivery per
    eligible or capped contact) and its commit. The rows are deleted afterwards (not timed;
    on PostgreSQL the table is then vacuumed) so every run inserts the whole audience again.
  Peak RSS is that process's own high-water mark (VmHWM), after the count and at the end.

How to read the ratios count/reference and materialise/reference: how many plain passes over
the contact table the audience costs, on the same connection. The audience query has to look
at every contact, so the reference is its floor; the ratios make runs on different machines
roughly comparable and show whether a change to the engine made it cheaper, but a ratio well
above 1 is expected (the query joins the projections of the evidence, suppression and recent
sends to every contact; materialise also writes the rows).
Times are the median of the runs (min and max shown); the targets apply to PostgreSQL.

Run: `.venv/bin/python bench/audience.py [--contacts N] [--runs R] [--backend B]`; the results
go to bench/results/audience.json. `--keep-database` leaves the loaded database(s) in place
(for EXPLAIN ANALYZE); drop them yourself afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from common import (
    CONFIG,
    PG_HOST,
    PG_PORT,
    PG_USER,
    ROOT,
    SECRET,
    TEMPLATES,
    mailer,
    pg_connect,
    pg_recreate,
    pg_version,
)
from rich.console import Console
from rich.table import Table
from sqlalchemy.dialects import postgresql, sqlite

from campaigns.audience.audience import audience_counts, load_target, materialise
from campaigns.audience.eligibility import CampaignTarget
from campaigns.clock import FixedClock
from campaigns.config import parse_business_config
from campaigns.evidence.projections import rebuild_statements
from campaigns.models import Delivery, metadata
from campaigns.sending.campaigns import create_campaign
from campaigns.sending.inputs import CampaignIn
from campaigns.suppression.hashing import AddressHasher
from mailer.services import Services
from mailer.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results" / "audience.json"

PG_DATABASE = "mailer_bench_audience"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

CAMPAIGN = {"purpose": "promotions", "categories": ["tea"], "template": "promotion.html"}
TARGET_COUNT_S = 3.0  # PostgreSQL, median
TARGET_MATERIALISE_S = 15.0  # PostgreSQL, median
TARGET_RSS_MB = 200.0  # PostgreSQL, worst run

CONNECT_TIMEOUT = 30.0  # s
COMMAND_TIMEOUT = 300.0  # s, migrate and VACUUM
LOAD_TIMEOUT = 3600.0  # s, loading one backend
CHILD_TIMEOUT = 1800.0  # s, one measuring (or setup) process

console = Console()


# ---- data ------------------------------------------------------------------------------------
#
# Every attribute of contact i is decided by u(k), a per-mille value (0..999) that is the top of
# i * MULTIPLIERS[k] mod 2^32 (Fibonacci hashing): plain integer arithmetic, so PostgreSQL and
# SQLite generate the same data, and the attributes are independent to within a few percent.

MULTIPLIERS = (
    0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1, 0xCC9E2D51, 0x1B873593,
    0x5BD1E995, 0x7FEB352D, 0x846CA68B, 0xB5297A4D, 0x1B56C4E9, 0x2C1B3C6D, 0x297A2D39,
    0x68E31DA5, 0xE6546B65,
)  # fmt: skip
(
    CREATED, NEWSLETTER, PROMOTIONS, PARTNER, ORDERS, FIRST_PLACED, SECOND_PLACED, FIRST_STATUS,
    OPT_OUT, OTHER_EMAIL, FIRST_CATEGORIES, SUPPRESSED, MAILED, CONSENT_TIME, SECOND_STATUS,
    SECOND_CATEGORIES,
) = range(len(MULTIPLIERS))  # fmt: skip

DAY = 86400  # s
CONTACT_ID = "md5('contact-' || i)"
EMAIL = (
    "'c' || i || '@example.' || CASE i % 4 WHEN 0 THEN 'be' WHEN 1 THEN 'com' WHEN 2 THEN 'fr'"
    " ELSE 'nl' END"
)
ADDRESS_HASH = "md5('address-' || i) || md5('address+' || i)"  # 64 hex characters
CATEGORY = "CASE ({}) % 3 WHEN 0 THEN 'tea' WHEN 1 THEN 'herbal-tea' ELSE 'baby-food' END"


def u(k: int) -> str:
    return f"((i * {MULTIPLIERS[k]}) % 4294967296 * 1000 / 4294967296)"


@dataclass(frozen=True)
class Dialect:
    """The two things the generating SQL cannot say the same way on both backends."""

    name: str

    def series(self, n: int) -> str:
        """A FROM item with one row per contact number i = 1..n."""
        if self.name == "postgresql":
            return f"(SELECT generate_series(1, {n})::bigint AS i) AS s"
        return (
            f"(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < {n})"
            " SELECT i FROM r) AS s"
        )

    def compile(self, statement: Any) -> str:
        dialect = postgresql.dialect() if self.name == "postgresql" else sqlite.dialect()
        return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))

    def ago(self, seconds: str) -> str:
        """NOW minus `seconds` (an SQL expression), as the UTCDateTime column stores it."""
        now = f"{NOW:%Y-%m-%d %H:%M:%S}"
        if self.name == "postgresql":
            return f"(TIMESTAMPTZ '{now}+00' - ({seconds}) * INTERVAL '1 second')"
        # SQLAlchemy stores naive UTC text with microseconds on SQLite; compare as text.
        return (
            f"(strftime('%Y-%m-%d %H:%M:%S', '{now}', '-' || ({seconds}) || ' seconds')"
            " || '.000000')"
        )


def _consent(
    d: Dialect, n: int, purpose: str, k: int, shares: tuple[int, int, int, int]
) -> list[tuple[str, str]]:
    """Grants for `purpose` (u(k) < granted; invalid from `invalid`), withdrawals of some
    valid grants (u(k) < withdrawn) and a few grants again after that (u(k) < regranted)."""
    granted, invalid, withdrawn, regranted = shares
    columns = (
        "contact_id, purpose, granted, captured_at, wording, wording_version, channel, url, ip,"
        " checkbox_prechecked, capture_method, valid, refused_reason, recorded_at, fingerprint"
    )
    grant_at = f"({u(CONSENT_TIME)} * 100000 + 7200)"  # up to 3.2 years ago

    def event(step: str, is_grant: bool, at: str, where: str) -> tuple[str, str]:
        bad = f"({u(k)} >= {invalid})" if step == "grant" else "FALSE"
        evidence = (
            f"'Yes, send me {purpose}', '2025-03', 'checkout',"
            " 'https://shop.example.be/checkout', '203.0.113.' || (i % 254 + 1),"
            f" {bad} AND i % 2 = 0, CASE WHEN {bad} AND i % 2 = 1 THEN 'terms_acceptance'"
            " ELSE 'checkbox' END"
            if is_grant
            else "NULL, NULL, 'preference_center', NULL, NULL, NULL, 'checkbox'"
        )
        reason = (
            f"CASE WHEN NOT {bad} THEN NULL WHEN i % 2 = 0 THEN 'prechecked_box'"
            " ELSE 'terms_acceptance' END"
        )
        fingerprint = f"md5('{purpose}-{step}-' || i) || md5('{purpose}+{step}+' || i)"
        sql = (
            f"INSERT INTO consent_event ({columns})"
            f" SELECT {CONTACT_ID}, '{purpose}', {'TRUE' if is_grant else 'FALSE'},"
            f" {d.ago(at)}, {evidence}, NOT {bad}, {reason}, {d.ago(at)}, {fingerprint}"
            f" FROM {d.series(n)} WHERE {where}"
        )
        return f"consent_event ({purpose} {step})", sql

    return [
        event("grant", True, grant_at, f"{u(k)} < {granted}"),
        event("withdrawal", False, f"{grant_at} / 2", f"{u(k)} < {withdrawn}"),
        event("regrant", True, f"{grant_at} / 4", f"{u(k)} < {regranted}"),
    ]


def load_statements(d: Dialect, n: int, key_id: str) -> list[tuple[str, str]]:
    """(label, SQL) of every INSERT that loads n contacts and their evidence."""
    series = d.series(n)
    first_order = "'SO-' || i || '-1'"
    second_order = "'SO-' || i || '-2'"
    order_columns = (
        "id, contact_id, email, placed_at, status, opt_out_offered, opt_out_used, recorded_at"
    )
    first_placed = d.ago(f"{u(FIRST_PLACED)} * 126230 + 3600")  # up to 4 years ago
    second_placed = d.ago(f"{u(SECOND_PLACED)} * 63115 + 3600")  # up to 2 years ago
    campaign_columns = (
        "id, name, purpose, subject, template, locale, status, created_at, updated_at"
    )
    delivery_columns = (
        "campaign_id, run, contact_id, status, skip_reason, basis_kind, consent_event_id,"
        " order_id, queued_at, sent_at"
    )

    def past_campaign(number: int, days_ago: int) -> str:
        at = d.ago(str(days_ago * DAY))
        return (
            f"('benchpast{number}', 'Past mailing {number}', 'newsletter', 'News',"
            f" 'newsletter.html', NULL, 'sent', {at}, {at})"
        )

    def deliveries(number: int, seconds_ago: str, where: str) -> tuple[str, str]:
        sent = d.ago(seconds_ago)
        return (
            f"delivery (past mailing {number})",
            f"INSERT INTO delivery ({delivery_columns}) SELECT 'benchpast{number}', 0,"
            f" {CONTACT_ID}, 'sent', NULL, 'consent', NULL, NULL, {sent}, {sent}"
            f" FROM {series} WHERE {where}",
        )

    return [
        (
            "contact",
            "INSERT INTO contact (id, email, external_id, name, locale, source_channel,"
            " source_url, created_at, updated_at)"
            f" SELECT {CONTACT_ID}, {EMAIL}, 'cust-' || i, 'Contact ' || i,"
            " CASE i % 6 WHEN 0 THEN 'en' WHEN 1 THEN 'fr' WHEN 2 THEN 'fr' ELSE 'nl' END,"
            " 'checkout', 'https://shop.example.be/checkout',"
            f" {d.ago(f'{u(CREATED)} * 126230 + 60')}, {d.ago(f'{u(CREATED)} * 60000 + 60')}"
            f" FROM {series}",
        ),
        (
            "contact_hash",
            "INSERT INTO contact_hash (contact_id, key_id, address_hash)"
            f" SELECT {CONTACT_ID}, '{key_id}', {ADDRESS_HASH} FROM {series}",
        ),
        # (granted, invalid from, withdrawn, granted again) per mille of the contacts
        *_consent(d, n, "newsletter", NEWSLETTER, (400, 370, 60, 10)),
        *_consent(d, n, "promotions", PROMOTIONS, (250, 230, 40, 8)),
        *_consent(d, n, "partner_offers", PARTNER, (80, 72, 10, 2)),
        (
            # half the contacts ordered; 2% of them gave another address in that order; 5%
            # cancelled, 3% were offered no opt-out, and 20% used it (10% of the contacts)
            "shop_order (first)",
            f"INSERT INTO shop_order ({order_columns})"
            f" SELECT {first_order}, {CONTACT_ID},"
            f" CASE WHEN {u(OTHER_EMAIL)} < 20 THEN 'old' || i || '@example.net' ELSE {EMAIL}"
            f" END, {first_placed},"
            f" CASE WHEN {u(FIRST_STATUS)} < 50 THEN 'cancelled' ELSE 'completed' END,"
            f" {u(FIRST_STATUS)} >= 80, {u(FIRST_STATUS)} >= 80 AND {u(OPT_OUT)} < 200,"
            f" {first_placed} FROM {series} WHERE {u(ORDERS)} < 500",
        ),
        (
            "shop_order (second)",
            f"INSERT INTO shop_order ({order_columns})"
            f" SELECT {second_order}, {CONTACT_ID}, {EMAIL}, {second_placed},"
            f" CASE WHEN {u(SECOND_STATUS)} < 50 THEN 'cancelled' ELSE 'completed' END,"
            f" TRUE, FALSE, {second_placed} FROM {series} WHERE {u(ORDERS)} < 200",
        ),
        (
            # one category per order, a second one for 30% of the orders
            "order_category",
            "INSERT INTO order_category (order_id, category)"
            f" SELECT {first_order}, {CATEGORY.format(u(FIRST_CATEGORIES))}"
            f" FROM {series} WHERE {u(ORDERS)} < 500"
            f" UNION ALL SELECT {first_order}, {CATEGORY.format(u(FIRST_CATEGORIES) + ' + 1')}"
            f" FROM {series} WHERE {u(ORDERS)} < 500 AND {u(FIRST_CATEGORIES)} < 300"
            f" UNION ALL SELECT {second_order}, {CATEGORY.format(u(SECOND_CATEGORIES))}"
            f" FROM {series} WHERE {u(ORDERS)} < 200"
            f" UNION ALL SELECT {second_order}, {CATEGORY.format(u(SECOND_CATEGORIES) + ' + 2')}"
            f" FROM {series} WHERE {u(ORDERS)} < 200 AND {u(SECOND_CATEGORIES)} < 300",
        ),
        (
            # 2.5% of the addresses have an entry, lifted for 0.5% (unsubscribed, then
            # subscribed again); 1% are entries of contacts erased since
            "suppression",
            "INSERT INTO suppression (address_hash, key_id, reason, channel, note,"
            " campaign_id, created_at, lifted_at)"
            f" SELECT {ADDRESS_HASH}, '{key_id}',"
            f" CASE WHEN {u(SUPPRESSED)} < 5 THEN 'unsubscribe' WHEN i % 3 = 0 THEN 'hard_bounce'"
            " WHEN i % 3 = 1 THEN 'objection' ELSE 'unsubscribe' END, 'link', NULL, NULL,"
            f" {d.ago(f'{u(SUPPRESSED)} * {DAY} + 3600')},"
            f" CASE WHEN {u(SUPPRESSED)} < 5 THEN {d.ago(f'{u(SUPPRESSED)} * 3600 + 60')} END"
            f" FROM {series} WHERE {u(SUPPRESSED)} < 25"
            " UNION ALL SELECT md5('erased-' || i) || md5('erased+' || i), "
            f"'{key_id}', 'erasure', 'admin', NULL, NULL, {d.ago('i % 10000000 + 60')}, NULL"
            f" FROM {series} WHERE i % 100 = 0",
        ),
        (
            "campaign (past mailings)",
            f"INSERT INTO campaign ({campaign_columns}) VALUES"
            f" {past_campaign(0, 21)}, {past_campaign(1, 6)}, {past_campaign(2, 1)}",
        ),
        # 30% mailed three weeks ago (outside the 7-day cap window); 5% in the last 7 days,
        # 3% of them twice (max 2 per 7 days: capped)
        deliveries(0, f"{21 * DAY} + i % 3600", f"{u(MAILED)} < 300"),
        deliveries(1, f"{DAY} + i % {5 * DAY}", f"{u(MAILED)} < 50"),
        deliveries(2, f"3600 + i % {DAY}", f"{u(MAILED)} < 30"),
        # The evidence went in behind the service's back: fill the projections the audience
        # query reads from it, as the migration that introduced them does.
        *(("projections", d.compile(statement)) for statement in rebuild_statements()),
    ]


# ---- databases -------------------------------------------------------------------------------


def pg_url(database: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


async def _pg_connect(database: str, command_timeout: float = COMMAND_TIMEOUT) -> Any:
    return await pg_connect(database, command_timeout=command_timeout)


async def _pg_execute(statements: Sequence[tuple[str, str]], transaction: bool) -> None:
    conn = await _pg_connect(PG_DATABASE, command_timeout=LOAD_TIMEOUT)
    try:
        if transaction:
            async with conn.transaction():
                for _, sql in statements:
                    await conn.execute(sql)
        else:
            for _, sql in statements:
                await conn.execute(sql)
    finally:
        await conn.close()


def pg_load(n: int, key_id: str) -> None:
    asyncio.run(_pg_execute(load_statements(Dialect("postgresql"), n, key_id), True))
    asyncio.run(_pg_execute([("analyze", "ANALYZE")], False))


def pg_vacuum_deliveries() -> None:
    asyncio.run(_pg_execute([("vacuum", "VACUUM (ANALYZE) delivery")], False))


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def _md5(text: str) -> str:
    # what PostgreSQL's md5() returns: test data, not security
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def sqlite_load(path: Path, n: int, key_id: str) -> None:
    deadline = time.monotonic() + LOAD_TIMEOUT
    conn = sqlite3.connect(path, timeout=CONNECT_TIMEOUT, isolation_level=None)
    try:
        # A non-zero return aborts the running statement: the load cannot outlive its bound.
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 100_000)
        conn.create_function("md5", 1, _md5, deterministic=True)
        for pragma in ("foreign_keys=ON", "journal_mode=WAL", "synchronous=NORMAL"):
            conn.execute(f"PRAGMA {pragma}")  # what the service sets on each connection
        conn.execute("BEGIN")
        for _, sql in load_statements(Dialect("sqlite"), n, key_id):
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MAILER_DATABASE_URL=database_url,
        MAILER_CONFIG=str(CONFIG),
        MAILER_SECRET_KEYS=SECRET,
        MAILER_DEV="1",
        PYTHONUNBUFFERED="1",
    )
    return env


# ---- the measuring process -------------------------------------------------------------------


def bench_settings(database_url: str) -> Settings:
    return Settings(
        business=parse_business_config(tomllib.loads(CONFIG.read_text(encoding="utf-8"))),
        database_url=database_url,
        secret_keys=(SECRET.encode(),),
        dev_mode=True,
        templates_dir=TEMPLATES,
    )


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: a child started by exec inherits
    its parent's peak there, which would count the data loading."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def child_setup(database_url: str) -> dict[str, Any]:
    """Create the measured campaign; return its id, the table sizes and audience counts."""
    services = Services.build(bench_settings(database_url), FixedClock(NOW))
    ctx = services.context
    try:
        data = CampaignIn(name="Bench: tea promotion", subject="Tea offers", **CAMPAIGN)
        campaign = await services.db.transaction(
            lambda s: create_campaign(s, data, ctx, templates=TEMPLATES)
        )
        async with services.db.sessions() as session:
            sizes = {
                table.name: (
                    await session.execute(sa.select(sa.func.count()).select_from(table))
                ).scalar_one()
                for table in metadata.sorted_tables
            }
            _, target = await load_target(session, campaign.id)
            measured = await audience_counts(session, target, ctx)
            # The same categories for a third-party purpose, where soft opt-in never applies
            # (the one reason a first-party campaign cannot show).
            third = CampaignTarget("-", "partner_offers", target.categories)
            third_party = await audience_counts(session, third, ctx)
        return {
            "campaign_id": campaign.id,
            "sizes": sizes,
            "audience": asdict(measured),
            "audience_partner_offers": asdict(third_party),
        }
    finally:
        await services.close()


async def child_measure(database_url: str, campaign_id: str) -> dict[str, Any]:
    services = Services.build(bench_settings(database_url), FixedClock(NOW))
    ctx = services.context
    result: dict[str, Any] = {"rss_start_mb": round(peak_rss_mb(), 1)}
    try:
        async with services.db.sessions() as session:
            await session.execute(sa.text("SELECT 1"))  # connect before the clocks start
            _, target = await load_target(session, campaign_id)

            started = time.perf_counter()
            contacts = (await session.execute(sa.text("SELECT count(*) FROM contact"))).scalar()
            result["reference_s"] = time.perf_counter() - started

            started = time.perf_counter()
            counts = await audience_counts(session, target, ctx)
            result["count_s"] = time.perf_counter() - started
            result["rss_after_count_mb"] = round(peak_rss_mb(), 1)

            started = time.perf_counter()
            rows = await materialise(session, target, ctx)
            await session.commit()
            result["materialise_s"] = time.perf_counter() - started
            result["rss_peak_mb"] = round(peak_rss_mb(), 1)

            delivery = Delivery.__table__  # type: ignore[attr-defined]
            await session.execute(delivery.delete().where(delivery.c.campaign_id == target.id))
            await session.commit()
        result.update(
            contacts=contacts,
            rows=rows,
            expected_rows=counts.eligible + counts.excluded["frequency_cap"],
        )
        return result
    finally:
        await services.close()


def run_child(mode: str, database_url: str, campaign_id: str = "") -> dict[str, Any]:
    """Run this file in a fresh process in `mode`; return the JSON it prints last."""
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--url",
            database_url,
            "--campaign",
            campaign_id,
        ],
        env=_env(database_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"`{mode}` process exited {done.returncode}:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ---- report ----------------------------------------------------------------------------------


@dataclass
class BackendResult:
    backend: str
    load_s: float = 0.0
    setup: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def times(self, key: str) -> list[float]:
        return [run[key] for run in self.runs]

    def median(self, key: str) -> float:
        return statistics.median(self.times(key))

    @property
    def peak_rss_mb(self) -> float:
        return max(self.times("rss_peak_mb"))

    def summary(self) -> dict[str, Any]:
        reference = self.median("reference_s")
        stats = {
            f"{key}_{name}": round(fn(self.times(f"{key}_s")), 4)
            for key in ("reference", "count", "materialise")
            for name, fn in (("median", statistics.median), ("min", min), ("max", max))
        }
        return {
            "backend": self.backend,
            "load_s": round(self.load_s, 1),
            **self.setup,
            "runs": self.runs,
            **stats,
            "ratio_count": round(self.median("count_s") / reference, 1),
            "ratio_materialise": round(self.median("materialise_s") / reference, 1),
            "rows_materialised": self.runs[-1]["rows"],
            "peak_rss_mb": self.peak_rss_mb,
        }


def print_mix(result: BackendResult) -> None:
    """The table sizes and the audience by basis and by reason, so the mix can be judged."""
    sizes = result.setup["sizes"]
    console.print(
        f"[bold]{result.backend}[/bold]: loaded in {result.load_s:,.1f} s: "
        + ", ".join(f"{name} {rows:,}" for name, rows in sizes.items() if rows)
    )
    measured, third_party = result.setup["audience"], result.setup["audience_partner_offers"]
    table = Table(
        title=f"Audience on {result.backend} (campaign categories {CAMPAIGN['categories']})"
    )
    table.add_column("contacts")
    table.add_column(f"{CAMPAIGN['purpose']} (measured)", justify="right")
    table.add_column("partner_offers", justify="right")
    for basis in measured["by_basis"]:
        table.add_row(
            f"eligible: {basis}",
            f"{measured['by_basis'][basis]:,}",
            f"{third_party['by_basis'][basis]:,}",
        )
    for reason in measured["excluded"]:
        table.add_row(
            f"excluded: {reason}",
            f"{measured['excluded'][reason]:,}",
            f"{third_party['excluded'][reason]:,}",
        )
    console.print(table)


def report(results: list[BackendResult], meta: dict[str, Any]) -> None:
    table = Table(title=f"Audience of {meta['contacts']:,} contacts, {meta['runs']} run(s)")
    table.add_column("measure")
    for result in results:
        table.add_column(result.backend, justify="right")

    def row(label: str, cell: Any) -> None:
        table.add_row(label, *(cell(result) for result in results))

    for label, key in (
        ("reference s", "reference_s"),
        ("count s", "count_s"),
        ("materialise s", "materialise_s"),
    ):
        row(f"{label}, median", lambda r, key=key: f"{r.median(key):.3f}")
        row("  min / max", lambda r, key=key: f"{min(r.times(key)):.3f} / {max(r.times(key)):.3f}")
    row("ratio count / reference", lambda r: f"{r.summary()['ratio_count']:,.1f}")
    row("ratio materialise / reference", lambda r: f"{r.summary()['ratio_materialise']:,.1f}")
    row("rows materialised", lambda r: f"{r.summary()['rows_materialised']:,}")
    row("peak RSS MB, worst run", lambda r: f"{r.peak_rss_mb:,.1f}")
    row("  after imports", lambda r: f"{max(r.times('rss_start_mb')):,.1f}")
    console.print(table)
    console.print(
        f"each run in a fresh process; campaign purpose {CAMPAIGN['purpose']!r}, categories"
        f" {CAMPAIGN['categories']}; reference: SELECT count(*) FROM contact on the same"
        f" connection; nproc {meta['nproc']}"
    )
    pg = next((r for r in results if r.backend == "postgresql"), None)
    if pg is not None:
        targets = {
            f"count within {TARGET_COUNT_S:g} s": pg.median("count_s") <= TARGET_COUNT_S,
            f"materialise within {TARGET_MATERIALISE_S:g} s": pg.median("materialise_s")
            <= TARGET_MATERIALISE_S,
            f"peak RSS under {TARGET_RSS_MB:g} MB": pg.peak_rss_mb < TARGET_RSS_MB,
        }
        meta["targets_postgresql"] = targets
        for name, met in targets.items():
            console.print(f"target on PostgreSQL: {name}: {'met' if met else '[red]NOT met[/red]'}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {**meta, "backends": {r.backend: r.summary() for r in results}}
    RESULTS.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    console.print(f"results written to {RESULTS.relative_to(ROOT)}")


# ---- main ------------------------------------------------------------------------------------


def bench_backend(
    name: str, database_url: str, load: Any, args: argparse.Namespace
) -> BackendResult:
    result = BackendResult(name)
    mailer(_env(database_url), "migrate", timeout=COMMAND_TIMEOUT)
    key_id = AddressHasher.key_id(SECRET.encode())
    with console.status(f"{name}: loading {args.contacts:,} contacts"):
        started = time.perf_counter()
        load(args.contacts, key_id)
        result.load_s = time.perf_counter() - started
    with console.status(f"{name}: creating the campaign and counting its audience"):
        result.setup = run_child("setup", database_url)
    print_mix(result)
    for run in range(1, args.runs + 1):
        with console.status(f"{name}: run {run}/{args.runs}"):
            measured = run_child("measure", database_url, result.setup["campaign_id"])
            if name == "postgresql":
                pg_vacuum_deliveries()
        result.runs.append(
            {k: round(v, 4) if isinstance(v, float) else v for k, v in measured.items()}
        )
        if measured["rows"] != measured["expected_rows"]:
            console.print(
                f"[red]materialise inserted {measured['rows']:,} rows, but the count says"
                f" {measured['expected_rows']:,} eligible or capped[/red]"
            )
        console.print(
            f"{name} run {run}/{args.runs}: reference {measured['reference_s']:.3f} s,"
            f" count {measured['count_s']:.3f} s, materialise {measured['materialise_s']:.3f} s"
            f" ({measured['rows']:,} rows), peak RSS {measured['rss_peak_mb']:,.1f} MB"
        )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000, help="contacts to load")
    parser.add_argument("--runs", type=int, default=3, help="runs per backend (median reported)")
    parser.add_argument(
        "--backend",
        choices=("all", "postgresql", "sqlite"),
        default="all",
        help="which backend(s) to measure",
    )
    parser.add_argument(
        "--keep-database", action="store_true", help="leave the loaded database(s) in place"
    )
    parser.add_argument("--child", choices=("setup", "measure"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--campaign", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "setup":
        print(json.dumps(asyncio.run(child_setup(args.url))))
        return 0
    if args.child == "measure":
        print(json.dumps(asyncio.run(child_measure(args.url, args.campaign))))
        return 0
    if min(args.contacts, args.runs) < 1:
        parser.error("--contacts and --runs must be positive")

    meta: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "contacts": args.contacts,
        "runs": args.runs,
        "now": NOW.isoformat(),
        "campaign": CAMPAIGN,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "reference": "SELECT count(*) FROM contact, same process and connection",
    }
    names = ("postgresql", "sqlite") if args.backend == "all" else (args.backend,)
    results: list[BackendResult] = []
    work_dir = Path(tempfile.mkdtemp(prefix="mailer-bench-audience-"))
    try:
        if "postgresql" in names:
            meta["postgresql"] = pg_version()
            pg_recreate(PG_DATABASE)
            results.append(bench_backend("postgresql", pg_url(PG_DATABASE), pg_load, args))
        if "sqlite" in names:
            path = work_dir / "audience.db"
            results.append(
                bench_backend(
                    "sqlite",
                    sqlite_url(path),
                    lambda n, key_id: sqlite_load(path, n, key_id),
                    args,
                )
            )
    finally:
        if args.keep_database:
            console.print(f"kept: PostgreSQL database {PG_DATABASE!r}, SQLite files in {work_dir}")
        else:
            if "postgresql" in names:
                pg_recreate(PG_DATABASE, drop_only=True)
            shutil.rmtree(work_dir, ignore_errors=True)
    report(results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
