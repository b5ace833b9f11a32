"""Retention benchmark: the daily job over a million contacts on PostgreSQL.

What is measured:

* Data: a fresh database (`mailer_bench_retention`, dropped at the end), migrated with the real
  `python -m mailer migrate`, then filled in SQL (generate_series): `--contacts` contacts
  (1,000,000), each with its address hash, its marketing profile and one delivery. A tenth of
  them are due: created 40 months ago with one order then (and its category, its coverage) and
  nothing since. The rest hold a standing newsletter consent (the event and the current
  consent) given in the last three years. A quarter of the deliveries of those who stay are
  older than `delivery_log_months` (26 months), and there are 50,000 reports, half of them
  older than `report_months`.
* Ours: `python -m mailer retention` run as an operator runs it, in a child process; wall time
  from start to exit, and its peak RSS (the child's ru_maxrss, from wait4). Before it,
  `retention --dry-run` gives the counts, and after it the database is checked: every due
  contact gone with all its rows, nobody else's contact gone, the old deliveries and reports
  gone and the recent ones there.
* Reference, in the same run, before ours: one raw SQL statement that counts the due contacts
  with the job's own predicate (`SELECT count(*)` over the same NOT EXISTS), the least a job
  that finds them must do.

Target (issue 12): under 60 s on this machine, memory flat (the job works in batches of 10,000:
its peak RSS does not grow with the number of contacts; `--contacts 200000` shows it).

Run: `.venv/bin/python bench/retention.py [--contacts N] [--runs R]`; the median of R runs is
reported, and the results go to bench/results/retention.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from common import CONFIG, PG_HOST, PG_PORT, PG_USER, ROOT, SECRET, mailer, pg_connect, pg_recreate

DATABASE = "mailer_bench_retention"
URL = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{DATABASE}"
RESULTS = ROOT / "bench" / "results" / "retention.json"


def env() -> dict[str, str]:
    return {
        **os.environ,
        "MAILER_DATABASE_URL": URL,
        "MAILER_CONFIG": str(CONFIG),
        "MAILER_SECRET_KEYS": SECRET,
        "MAILER_DEV": "1",
    }


def load_sql(n: int) -> list[str]:
    """The data, in SQL. Contact i is due when i % 10 = 0."""
    due = "i % 10 = 0"
    return [
        f"""INSERT INTO contact (id, email, name, locale, source_channel, created_at, updated_at)
        SELECT md5('c' || i)::varchar(32), 'p' || i || '@example.be', 'P ' || i, 'nl', 'checkout',
               CASE WHEN {due} THEN now() - interval '40 months'
                    ELSE now() - (i % 1000) * interval '1 day' END, now()
        FROM generate_series(1, {n}) AS i""",
        f"""INSERT INTO contact_hash (contact_id, key_id, address_hash)
        SELECT md5('c' || i), 'bench', md5('h' || i) || md5('H' || i)
        FROM generate_series(1, {n}) AS i""",
        f"""INSERT INTO marketing_profile (contact_id, suppressed)
        SELECT md5('c' || i), false FROM generate_series(1, {n}) AS i""",
        f"""INSERT INTO shop_order (id, contact_id, email, placed_at, status, opt_out_offered,
                                opt_out_used, recorded_at)
        SELECT 'SO-' || i, md5('c' || i), 'p' || i || '@example.be',
               now() - interval '40 months', 'paid', true, false, now() - interval '40 months'
        FROM generate_series(1, {n}) AS i WHERE {due}""",
        f"""INSERT INTO order_category (order_id, category)
        SELECT 'SO-' || i, 'tea' FROM generate_series(1, {n}) AS i WHERE {due}""",
        f"""INSERT INTO purchase_coverage (contact_id, category, order_id, placed_at)
        SELECT md5('c' || i), 'tea', 'SO-' || i, now() - interval '40 months'
        FROM generate_series(1, {n}) AS i WHERE {due}""",
        f"""INSERT INTO consent_event (id, contact_id, purpose, granted, captured_at, wording,
                                   wording_version, channel, checkbox_prechecked,
                                   capture_method, valid, recorded_at, fingerprint)
        SELECT i, md5('c' || i), 'newsletter', true, now() - (i % 1000) * interval '1 day',
               'Ja, stuur mij de nieuwsbrief', '2026-01', 'checkout', false, 'checkbox', true,
               now(), md5('f' || i)
        FROM generate_series(1, {n}) AS i WHERE NOT ({due})""",
        f"""INSERT INTO current_consent (contact_id, purpose, consent_event_id, granted,
                                     captured_at)
        SELECT md5('c' || i), 'newsletter', i, true, now() - (i % 1000) * interval '1 day'
        FROM generate_series(1, {n}) AS i WHERE NOT ({due})""",
        f"""INSERT INTO delivery (id, campaign_id, run, contact_id, status, basis_kind,
                              queued_at, sent_at, attempts)
        SELECT i, 'bench', 1, md5('c' || i), 'sent', 'consent',
               CASE WHEN i % 4 = 1 THEN now() - interval '26 months'
                    ELSE now() - interval '2 months' END,
               CASE WHEN i % 4 = 1 THEN now() - interval '26 months'
                    ELSE now() - interval '2 months' END, 1
        FROM generate_series(1, {n}) AS i""",
        """INSERT INTO inbound_message (received_at, channel, recipient, raw, truncated,
                                     null_sender, state, verdict)
        SELECT CASE WHEN i % 2 = 0 THEN now() - interval '8 months'
                    ELSE now() - interval '1 month' END,
               'smtp', 'bounces@ollekebolleke.be', convert_to(repeat('x', 3000), 'UTF8'),
               false, true, 'decided', 'hard'
        FROM generate_series(1, 50000) AS i""",
        "ANALYZE",
    ]


REFERENCE = """SELECT count(*) FROM contact c
WHERE c.created_at < now() - interval '36 months'
  AND NOT EXISTS (SELECT 1 FROM current_consent cc WHERE cc.contact_id = c.id AND cc.granted)
  AND NOT EXISTS (SELECT 1 FROM shop_order o
                  WHERE o.contact_id = c.id AND o.placed_at >= now() - interval '36 months')
  AND NOT EXISTS (SELECT 1 FROM consent_event e WHERE e.contact_id = c.id
                  AND (e.captured_at >= now() - interval '36 months'
                       OR e.confirmed_at >= now() - interval '36 months'))"""


async def _execute(statements: Sequence[str]) -> None:
    connection = await pg_connect(DATABASE)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _fetch(statement: str) -> Any:
    connection = await pg_connect(DATABASE)
    try:
        return await connection.fetchval(statement)
    finally:
        await connection.close()


def run_child(*args: str) -> tuple[float, float, str]:
    """`python -m mailer ARGS` to completion: wall seconds, peak RSS (MiB), its output."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "mailer", *args],
        env=env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    out = (child.stdout.read() if child.stdout else "") + (
        child.stderr.read() if child.stderr else ""
    )
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"mailer {' '.join(args)} failed:\n{out[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, out


def one_run(n: int) -> dict[str, Any]:
    pg_recreate(DATABASE)
    mailer(env(), "migrate")
    started = time.perf_counter()
    asyncio.run(_execute(load_sql(n)))
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    counted = asyncio.run(_fetch(REFERENCE))
    reference = time.perf_counter() - started
    _, _, dry = run_child("retention", "--dry-run")
    seconds, rss, out = run_child("retention")
    checks = {
        "contacts_left": asyncio.run(_fetch("SELECT count(*) FROM contact")),
        "due_left": asyncio.run(
            _fetch("SELECT count(*) FROM contact WHERE created_at < now() - interval '36 months'")
        ),
        "orders_left": asyncio.run(_fetch("SELECT count(*) FROM shop_order")),
        "deliveries_left": asyncio.run(_fetch("SELECT count(*) FROM delivery")),
        "old_deliveries_left": asyncio.run(
            _fetch("SELECT count(*) FROM delivery WHERE queued_at < now() - interval '24 months'")
        ),
        "reports_left": asyncio.run(_fetch("SELECT count(*) FROM inbound_message")),
        "hashes_left": asyncio.run(_fetch("SELECT count(*) FROM contact_hash")),
        "suppressions": asyncio.run(_fetch("SELECT count(*) FROM suppression")),
    }
    due, stays = n // 10, n - n // 10
    old_kept = sum(1 for i in range(1, n + 1) if i % 10 != 0 and i % 4 == 1)
    expected = {
        "contacts_left": stays,
        "due_left": 0,
        "orders_left": 0,
        "deliveries_left": stays - old_kept,
        "old_deliveries_left": 0,
        "reports_left": 25_000,
        "hashes_left": stays,
        "suppressions": 0,
    }
    if checks != expected or counted != due:
        raise AssertionError(f"retention left {checks}, expected {expected}; counted {counted}")
    return {
        "contacts": n,
        "due": due,
        "load_s": round(loaded, 1),
        "reference_count_s": round(reference, 3),
        "retention_s": round(seconds, 2),
        "ratio": round(seconds / reference, 1),
        "peak_rss_mb": round(rss, 1),
        "dry_run": dry.strip().splitlines()[-1],
        "output": out.strip().splitlines()[-1],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    runs = []
    try:
        for number in range(1, args.runs + 1):
            result = one_run(args.contacts)
            runs.append(result)
            print(
                f"run {number}/{args.runs}: {result['contacts']:,} contacts, {result['due']:,}"
                f" due: retention {result['retention_s']:.1f} s (the raw SQL count of who is"
                f" due {result['reference_count_s']:.2f} s, ratio {result['ratio']}), peak RSS"
                f" {result['peak_rss_mb']:.0f} MiB; checks passed",
                flush=True,
            )
    finally:
        pg_recreate(DATABASE, drop_only=True)
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "runs": runs,
        "median_retention_s": statistics.median(r["retention_s"] for r in runs),
        "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "target_under_60_s": statistics.median(r["retention_s"] for r in runs) < 60,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
