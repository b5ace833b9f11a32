"""One-click benchmark: a burst of RFC 8058 one-click POSTs with distinct valid tokens from a
real campaign, on PostgreSQL, against a bare endpoint in the same run.

What is measured:

* Data: a fresh, migrated database (the dispatch benchmark's loader and database name:
  `mailer_bench_dispatch`, dropped at the end) with N contacts (20,000) loaded through
  `ingest_contacts`, one newsletter campaign materialised for all of them, its deliveries
  marked sent; the N unsubscribe tokens of those deliveries, as the composer signs them.
* Ours: `python -m mailer serve` (one uvicorn process, as an operator starts it; its SMTP relay
  is Postfix's `smtp-sink`, for the acknowledgements), and `wrk` (Debian) at C connections (64)
  POSTing `List-Unsubscribe=One-Click` to `/u/{token}`, each token once (a Lua script hands them
  out, a slice per wrk thread). Reported: requests per second, p50 and p99
  latency, errors and time-outs, over a burst of `--seconds` (10). After the burst the database
  is checked: every address whose token was posted (those answered, and the few left in flight
  when wrk stopped) has exactly one `unsubscribe` entry (channel `one_click`) and one
  acknowledgement, sent (waited for up to a minute).
* Reference, in the same run, before ours: a bare Litestar app (`bench/bare_app.py`) under the
  same uvicorn settings whose POST commits one INSERT per request into the same PostgreSQL,
  over the service's own engine settings, loaded the same way (same wrk, connections, length).

Target (issue 14): ours at least 0.5 of the bare endpoint's requests per second, p99 under
50 ms, nothing lost. Runs R times (3), each on fresh data; medians are reported.

Run: `.venv/bin/python bench/oneclick.py [--contacts N] [--connections C] [--runs R]`; results
go to bench/results/oneclick.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dispatch  # the loader, the sink and the PostgreSQL helpers of bench/dispatch.py
import sqlalchemy as sa
from common import ROOT, mailer

from campaigns.clock import SystemClock
from campaigns.sending.lifecycle import start_run
from campaigns.tokens import Kind
from mailer.services import Services
from mailer.settings import Settings

RESULTS = ROOT / "bench" / "results" / "oneclick.json"
# Each wrk thread takes its own slice of the tokens, each once; a thread that used its slice
# repeats its last token (counted: `repeated`). The bare endpoint gets made-up tokens.
LUA = """
local tokens, i, last, made_up, prefix = {}, 1, 0, false, ""
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
function init(args)
  local id = wrk.thread:get("id")
  if args[1] == "made-up" then made_up, prefix = true, "b" .. id .. "-" return end
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  local share = tonumber(args[2])
  i, last = (id - 1) * share + 1, math.min(id * share, #tokens)
end
function request()
  local token
  if made_up then token = prefix .. i else token = tokens[math.min(i, last)] end
  i = i + 1
  return wrk.format("POST", "/u/" .. token,
    {["Content-Type"] = "application/x-www-form-urlencoded"}, "List-Unsubscribe=One-Click")
end
"""
THREADS = 2


def wait_for_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {seconds:.0f} s")


@contextmanager
def serving(command: list[str], env: dict[str, str], port: int) -> Iterator[int]:
    proc = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port)
        yield proc.pid
    finally:
        dispatch._stop(proc)


@contextmanager
def profiled(pid: int, out: Path | None, seconds: int) -> Iterator[None]:
    """py-spy (PyPI) on the service for the burst: where its CPU goes, as a flame graph
    (.svg) or collapsed stacks (any other name)."""
    if out is None:
        yield
        return
    spy = subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--duration",
         str(seconds), "--rate", "250", "--output", str(out), "--nonblocking",
         "--format", "flamegraph" if out.suffix == ".svg" else "raw"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.wait(timeout=seconds + 60)


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its waited-for children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> float:
    """CPU of every PostgreSQL process now (the backends come and go with connections; the
    ones of a burst outlive it, in the pool)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" in text:
            total += cpu_seconds(int(stat.parent.name))
    return total


@contextmanager
def cpu_of(pid: int, into: dict[str, Any]) -> Iterator[None]:
    """The CPU seconds the service and PostgreSQL used while the block ran."""
    ours, pg = cpu_seconds(pid), postgres_cpu()
    yield
    into["service_cpu_s"] = round(cpu_seconds(pid) - ours, 2)
    into["postgres_cpu_s"] = round(postgres_cpu() - pg, 2)


def wrk(
    port: int, tokens: list[str] | None, connections: int, seconds: int, work: Path
) -> dict[str, Any]:
    """POST for `seconds` at `connections`: each of `tokens` once, or made-up ones (None)."""
    script = work / "oneclick.lua"
    script.write_text(LUA)
    args = ["made-up"]
    if tokens is not None:
        path = work / "tokens.txt"
        path.write_text("\n".join(tokens) + "\n")
        args = [str(path), str(-(-len(tokens) // THREADS))]
    done = subprocess.run(
        [
            "wrk",
            "-t",
            str(THREADS),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr[-2000:]}")
    return parse_wrk(done.stdout)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out: str) -> dict[str, Any]:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s|m)\b", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s|m)\b", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not (rate and total and p50 and p99):
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return {
        "requests_per_second": float(rate.group(1)),
        "requests": int(total.group(1)),
        "p50_ms": _ms(*p50.groups()),
        "p99_ms": _ms(*p99.groups()),
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
        "timeouts": int(errors.group(4)) if errors else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


async def _prepare(settings: Settings, contacts: int) -> list[str]:
    """A campaign sent to everyone: the tokens of its unsubscribe links."""
    services = Services.build(settings, SystemClock())
    try:
        campaign_id = await dispatch._new_campaign(settings, "one-click")
        now = datetime.now(UTC)
        await services.db.transaction(
            lambda s: start_run(s, campaign_id, now, services.context, allowed=("draft",))
        )
        async with services.db.sessions() as session:
            await session.execute(
                sa.text("UPDATE delivery SET status = 'sent', sent_at = now(), attempts = 1")
            )
            await session.execute(
                sa.text("UPDATE campaign SET status = 'done' WHERE id = :c"), {"c": campaign_id}
            )
            await session.execute(
                sa.text("UPDATE campaign_run SET status = 'done', finished_at = now()")
            )
            await session.commit()
            ids = (await session.execute(sa.text("SELECT id FROM delivery ORDER BY id"))).scalars()
            tokens = [services.signer.delivery_token(Kind.UNSUBSCRIBE, i) for i in ids]
    finally:
        await services.close()
    if len(tokens) != contacts:
        raise AssertionError(f"{len(tokens)} deliveries for {contacts} contacts")
    return tokens


async def _outcome(settings: Settings, contacts: int) -> dict[str, int]:
    services = Services.build(settings, SystemClock())
    acknowledged = """
          (SELECT count(*) FROM acknowledgement),
          (SELECT count(*) FROM acknowledgement WHERE sent_at IS NOT NULL),"""
    try:
        async with services.db.sessions() as session:
            outbox = (
                await session.execute(sa.text("SELECT to_regclass('acknowledgement')"))
            ).scalar()
        # Code from before the outbox (a run for comparison) has no acknowledgement table: its
        # acknowledgements are not counted (-1).
        acks = acknowledged if outbox else " -1, -1,"
        query = f"""
        SELECT
          (SELECT count(*) FROM suppression WHERE reason = 'unsubscribe' AND channel = 'one_click'),
          (SELECT count(DISTINCT address_hash) FROM suppression),{acks}
          (SELECT count(*) FROM bare_hit)
        """
        for _ in range(120):
            async with services.db.sessions() as session:
                row = (await session.execute(sa.text(query))).one()
            if not outbox:
                break
            if row[3] >= row[1]:  # every address suppressed is acknowledged
                break
            await services.acknowledger.send()  # what a worker does for what is left
            await asyncio.sleep(0.5)
    finally:
        await services.close()
    keys = ("entries", "addresses", "acknowledgements", "acknowledged", "bare_rows")
    return dict(zip(keys, (int(v) for v in row), strict=True))


def one_run(args: argparse.Namespace, work: Path, env: dict[str, str], sink: int) -> dict[str, Any]:
    dispatch.pg_recreate()
    mailer(env, "migrate")
    settings = Settings.from_env(env)
    dispatch.load_contacts(settings, 0, args.contacts)
    tokens = asyncio.run(_prepare(settings, args.contacts))
    asyncio.run(
        dispatch._pg_execute("CREATE TABLE bare_hit (id bigserial PRIMARY KEY, token text)")
    )
    port = dispatch.free_port()
    uvicorn = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
               "--no-access-log", "--log-level", "warning"]  # fmt: skip
    bare_cpu: dict[str, Any] = {}
    with (
        serving(
            [*uvicorn, "--factory", "bare_app:app_from_env"],
            {**env, "PYTHONPATH": str(ROOT / "bench")},
            port,
        ) as pid,
        cpu_of(pid, bare_cpu),
    ):
        bare = wrk(port, None, args.connections, args.seconds, work)
    bare.update(bare_cpu)
    port = dispatch.free_port()
    serve = [sys.executable, "-m", "mailer", "serve", "--host", "127.0.0.1", "--port", str(port)]
    ours_cpu: dict[str, Any] = {}
    with serving(serve, {**env, "MAILER_INBOUND_PORT": "0"}, port) as pid:
        with profiled(pid, args.profile, args.seconds), cpu_of(pid, ours_cpu):
            ours = wrk(port, tokens, args.connections, args.seconds, work)
        outcome = asyncio.run(_outcome(settings, args.contacts))
    ours.update(ours_cpu)
    return {"bare": bare, "ours": ours, "outcome": outcome}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="length of each burst")
    parser.add_argument("--profile", type=Path, help="a py-spy flame graph of ours (.svg)")
    args = parser.parse_args(argv)
    dispatch.ensure_postfix()
    work = ROOT / "var" / "bench-oneclick"
    work.mkdir(parents=True, exist_ok=True)
    config = work / "mailer.toml"
    dispatch.write_config(config, None, None, 1)
    runs = []
    try:
        with dispatch.smtp_sink() as sink:
            env = dispatch.bench_env(config, sink)
            for n in range(args.runs):
                run = one_run(args, work, env, sink)
                runs.append(run)
                ours, bare, outcome = run["ours"], run["bare"], run["outcome"]
                print(
                    f"run {n + 1}/{args.runs}: bare {bare['requests_per_second']:,.0f}/s"
                    f" (p99 {bare['p99_ms']:.1f} ms); ours {ours['requests_per_second']:,.0f}/s"
                    f" (p50 {ours['p50_ms']:.1f} ms, p99 {ours['p99_ms']:.1f} ms, errors"
                    f" {ours['socket_errors']}, non-2xx {ours['non_2xx']}); ratio"
                    f" {ours['requests_per_second'] / bare['requests_per_second']:.3f};"
                    f" CPU s service/PostgreSQL: bare {bare['service_cpu_s']}/"
                    f"{bare['postgres_cpu_s']}, ours {ours['service_cpu_s']}/"
                    f"{ours['postgres_cpu_s']};"
                    f" {outcome}",
                    flush=True,
                )
    finally:
        dispatch.pg_recreate(drop_only=True)
    ratio = statistics.median(
        r["ours"]["requests_per_second"] / r["bare"]["requests_per_second"] for r in runs
    )
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "contacts": args.contacts,
        "connections": args.connections,
        "median_bare_rps": statistics.median(r["bare"]["requests_per_second"] for r in runs),
        "median_ours_rps": statistics.median(r["ours"]["requests_per_second"] for r in runs),
        "median_ratio": ratio,
        "median_ours_p99_ms": statistics.median(r["ours"]["p99_ms"] for r in runs),
        # Every address whose token was posted has its entry and its one acknowledgement:
        # those wrk saw answered, and up to one per connection that it left in flight when
        # the burst ended (the service still commits them).
        "all_suppressed_and_acknowledged": all(
            r["ours"]["requests"]
            <= r["outcome"]["addresses"]
            <= min(r["ours"]["requests"] + args.connections, args.contacts)
            and r["outcome"]["entries"] == r["outcome"]["addresses"]
            and r["outcome"]["acknowledged"] == r["outcome"]["addresses"]
            and r["outcome"]["acknowledgements"] == r["outcome"]["addresses"]
            for r in runs
        ),
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
