"""Console benchmark: how fast the marketers' pages answer at 1,000,000 contacts and 1,000
campaigns on PostgreSQL (issue 13).

What is measured:

* Data: a fresh database (`mailer_bench_console`, dropped at the end), migrated with the real
  `python -m mailer migrate`, loaded with bench/audience.py's statements (N contacts with
  consents, orders, suppressions and three past mailings of 30%, 5% and 3% of them, the
  projections filled), then C - 3 more campaigns (drafts, scheduled ones with a cron line, sent
  ones, with categories), one staff account, VACUUM ANALYZE (what autovacuum does after a bulk
  load).
* The service as an operator starts it: `python -m mailer serve` (one uvicorn process). A
  client logs in through the login form, then asks each page R times, one request at a time
  (a marketer clicks; the latency is what one person waits):
  - reference: `GET /health`, the bare endpoint of the same process, same connection;
  - the campaign list `/console/`;
  - a campaign's page (the editor, its schedule and runs) for campaigns picked at random,
    among them the three that mailed hundreds of thousands;
  - a contact's page for contacts picked at random, and the contact search by address;
  - the preview of a draft (composed from the editor's fields);
  - the audience breakdown (the fragment the page loads after it is shown), fewer times:
    it reads every contact. While one is running, a campaign page is asked again: that it
    answers within its usual time shows the breakdown does not block the page.
* Reported: p50 and p95 per page in ms, and the ratio p95 / the reference's p95.

Target: p95 under 150 ms for the campaign list, the campaign page and the contact page.

Run: `.venv/bin/python bench/console.py [--contacts N] [--campaigns C] [--requests R]`; results
go to bench/results/console.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from audience import NOW, Dialect, load_statements
from common import CONFIG, PG_HOST, PG_PORT, PG_USER, ROOT, SECRET, mailer, pg_connect, pg_recreate
from common import pg_version as pg_version_of
from dispatch import free_port
from oneclick import serving
from rich.console import Console
from rich.table import Table

from campaigns.suppression.hashing import AddressHasher

RESULTS = Path(__file__).resolve().parent / "results" / "console.json"
PG_DATABASE = "mailer_bench_console"
TARGET_P95_MS = 150.0
TARGETED = ("campaign list", "campaign page", "contact page")
PASSWORD = "bench-console-password"  # noqa: S105 (benchmark only)
console = Console()


def campaign_statements(extra: int) -> list[tuple[str, str]]:
    """`extra` more campaigns: a third drafts, a third scheduled weekly, a third sent; each
    with one or two categories."""
    series = f"(SELECT generate_series(1, {extra}) AS i) AS s"
    status = "CASE i % 3 WHEN 0 THEN 'draft' WHEN 1 THEN 'scheduled' ELSE 'done' END"
    at = f"(TIMESTAMPTZ '{NOW:%Y-%m-%d %H:%M:%S}+00' - (i * INTERVAL '1 hour'))"
    return [
        (
            "campaign (more)",
            "INSERT INTO campaign (id, name, purpose, subject, template, locale, status, cron,"
            " timezone, created_at, updated_at)"
            f" SELECT md5('campaign-' || i), 'Campaign ' || i,"
            " CASE i % 2 WHEN 0 THEN 'newsletter' ELSE 'promotions' END, 'Subject ' || i,"
            f" 'newsletter.html', NULL, {status},"
            " CASE WHEN i % 3 = 1 THEN '0 9 * * MON' END,"
            " CASE WHEN i % 3 = 1 THEN 'Europe/Brussels' END,"
            f" {at}, {at} FROM {series}",
        ),
        (
            "campaign_category",
            "INSERT INTO campaign_category (campaign_id, category)"
            f" SELECT md5('campaign-' || i), CASE i % 3 WHEN 0 THEN 'tea' WHEN 1 THEN"
            f" 'herbal-tea' ELSE 'baby-food' END FROM {series}"
            f" UNION ALL SELECT md5('campaign-' || i), 'tea' FROM {series} WHERE i % 3 = 1",
        ),
    ]


def pg_url() -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}"


def env() -> dict[str, str]:
    return {
        **os.environ,
        "MAILER_DATABASE_URL": pg_url(),
        "MAILER_CONFIG": str(CONFIG),
        "MAILER_SECRET_KEYS": SECRET,
        "MAILER_DEV": "1",
        "MAILER_INBOUND_PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }


async def load(contacts: int, campaigns: int) -> float:
    key_id = AddressHasher.key_id(SECRET.encode())
    statements = [
        *load_statements(Dialect("postgresql"), contacts, key_id),
        *campaign_statements(max(0, campaigns - 3)),
    ]
    started = time.perf_counter()
    conn = await pg_connect(PG_DATABASE, command_timeout=3600)
    try:
        async with conn.transaction():
            for label, sql in statements:
                with console.status(f"loading: {label}"):
                    await conn.execute(sql)
    finally:
        await conn.close()
    # What autovacuum does after a bulk load (PostgreSQL 13+ vacuums after inserts too): the
    # visibility map lets the counts be read from an index alone.
    conn = await pg_connect(PG_DATABASE, command_timeout=3600)
    try:
        with console.status("VACUUM ANALYZE"):
            await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def sample_ids(contacts: int) -> tuple[list[str], list[str], list[str]]:
    conn = await pg_connect(PG_DATABASE)
    try:
        campaign_ids = [r[0] for r in await conn.fetch("SELECT id FROM campaign")]
        picked = [
            r[0]
            for r in await conn.fetch(
                "SELECT id FROM contact WHERE id IN (SELECT md5('contact-' || i) FROM"
                " unnest($1::bigint[]) AS i)",
                random.Random(7).sample(range(1, contacts + 1), 200),
            )
        ]
        emails = [r[0] for r in await conn.fetch("SELECT email FROM contact ORDER BY id LIMIT 50")]
    finally:
        await conn.close()
    return campaign_ids, picked, emails


async def log_in(client: httpx.AsyncClient) -> None:
    form = await client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None, form.text[:500]
    answer = await client.post(
        "/console/login",
        data={"csrf": token.group(1), "email": "bench@example.be", "password": PASSWORD},
    )
    assert answer.status_code in (200, 303), answer.text[:500]


async def timed(client: httpx.AsyncClient, path: str) -> float:
    started = time.perf_counter()
    answer = await client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise RuntimeError(f"GET {path} answered {answer.status_code}: {answer.text[:300]}")
    return elapsed


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(ordered[-1], 1),
    }


async def measure(port: int, requests: int, contacts: int) -> dict[str, Any]:
    campaign_ids, contact_ids, emails = await sample_ids(contacts)
    rng = random.Random(11)
    big = ["benchpast0", "benchpast1", "benchpast2"]
    draft = (
        "/console/preview?name=Bench&purpose=newsletter&categories=tea&subject=Warm+tea"
        "&template=newsletter.html&lang=fr"
    )
    pages: dict[str, list[str]] = {
        "reference (/health)": ["/health"] * requests,
        "campaign list": ["/console/"] * requests,
        "campaign page": [
            f"/console/campaigns/{big[i % 3] if i % 5 == 0 else rng.choice(campaign_ids)}"
            for i in range(requests)
        ],
        "contact page": [f"/console/contacts/{rng.choice(contact_ids)}" for _ in range(requests)],
        "contact search": [f"/console/contacts?q={rng.choice(emails)}" for _ in range(requests)],
        "preview": [draft] * requests,
    }
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        await log_in(client)
        for path in ("/health", "/console/", draft):  # warm up: templates compiled, pool open
            for _ in range(5):
                await timed(client, path)
        for name, paths in pages.items():
            with console.status(f"measuring: {name}"):
                results[name] = summary([await timed(client, p) for p in paths])
        audience = "/console/audience?purpose=promotions&categories=tea"
        with console.status("measuring: the audience breakdown"):
            results["audience breakdown (fragment)"] = summary(
                [await timed(client, audience) for _ in range(3)]
            )
        # While a breakdown is counted, the campaign page answers as usual: it does not wait.
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=120, cookies=client.cookies
        ) as other:
            with console.status("measuring: a campaign page while a breakdown runs"):
                counting = asyncio.create_task(timed(other, audience))
                await asyncio.sleep(0.2)
                during = []
                while not counting.done():
                    during.append(await timed(client, f"/console/campaigns/{campaign_ids[0]}"))
                await counting
        results["campaign page during a breakdown"] = summary(during or [0.0])
    return results


def report(results: dict[str, Any], meta: dict[str, Any]) -> bool:
    reference = results["reference (/health)"]["p95_ms"] or 1.0
    table = Table(title=f"Console pages at {meta['contacts']:,} contacts (PostgreSQL)")
    for column in ("page", "requests", "p50 ms", "p95 ms", "max ms", "p95 / reference p95"):
        table.add_column(column, justify="left" if column == "page" else "right")
    met = True
    for name, figures in results.items():
        target = name in TARGETED
        ok = figures["p95_ms"] < TARGET_P95_MS
        met = met and (ok or not target)
        mark = (" [green]✓[/green]" if ok else " [red]✗[/red]") if target else ""
        table.add_row(
            name, str(figures["n"]), f"{figures['p50_ms']:.1f}", f"{figures['p95_ms']:.1f}{mark}",
            f"{figures['max_ms']:.1f}", f"{figures['p95_ms'] / reference:.1f}",
        )  # fmt: skip
    console.print(table)
    console.print(
        f"target: p95 < {TARGET_P95_MS:.0f} ms for {', '.join(TARGETED)}:"
        f" {'met' if met else 'NOT met'}"
    )
    return met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--campaigns", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=200, help="requests per page")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args(argv)
    pg_recreate(PG_DATABASE)
    try:
        mailer(env(), "migrate", timeout=300)
        load_s = asyncio.run(load(args.contacts, args.campaigns))
        console.print(f"{args.contacts:,} contacts and {args.campaigns:,} campaigns loaded"
                      f" in {load_s:.0f} s")  # fmt: skip
        subprocess.run(
            [sys.executable, "-m", "mailer", "users", "create", "--email", "bench@example.be",
             "--role", "admin", "--password-stdin"],
            input=PASSWORD + "\n", text=True, env=env(), cwd=ROOT, check=True,
            capture_output=True,
        )  # fmt: skip
        port = free_port()
        serve = [
            sys.executable,
            "-m",
            "mailer",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        with serving(serve, env(), port):
            results = asyncio.run(measure(port, args.requests, args.contacts))
    finally:
        if not args.keep_database:
            pg_recreate(PG_DATABASE, drop_only=True)
    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "postgresql": pg_version_of(),
        "contacts": args.contacts,
        "campaigns": args.campaigns,
        "requests_per_page": args.requests,
        "load_s": round(load_s, 1),
    }
    met = report(results, meta)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({**meta, "pages": results, "target_met": met}, indent=2) + "\n")
    console.print(f"results written to {RESULTS.relative_to(ROOT)}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
