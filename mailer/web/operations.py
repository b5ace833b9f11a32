"""What an operator asks of a running service: is it alive (`/health`), can it do its work
(`/ready`: the database answers, its migrations are current, the inbound listener is up), and
how is it doing (`/metrics`, Prometheus text, for a key with the `metrics` scope)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from litestar import Controller, MediaType, Response, get
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import text

from campaigns.figures import Figures, figures
from mailer.db import Database
from mailer.metrics import PROCESS
from mailer.migrate import head_revision, revision_of
from mailer.web.deps import CtxDep, DbDep, ReadinessDep


@dataclass(frozen=True)
class Readiness:
    """What `/ready` checks besides the database: whether this process should have a
    listener, and whether it has one."""

    listener_expected: bool
    listener_up: Callable[[], bool]


async def _checks(db: Database, readiness: Readiness) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        async with db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            current = await connection.run_sync(revision_of)
        checks["database"] = "ok"
        checks["migrations"] = "ok" if current == head_revision() else f"at {current}, not head"
    except Exception as exc:  # what is wrong, without the URL or its password
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["migrations"] = "unknown"
    if readiness.listener_expected:
        checks["listener"] = "ok" if readiness.listener_up() else "down"
    return checks


class OperationsController(Controller):
    tags = ["operations"]

    @get("/health", summary="Liveness: the process answers")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready", summary="Readiness: database reachable, migrations current, listener up")
    async def ready(self, db: DbDep, readiness: ReadinessDep) -> Response[dict[str, str]]:
        checks = await _checks(db, readiness)
        ok = all(value == "ok" for value in checks.values())
        return Response(
            {"status": "ok" if ok else "not ready", **checks}, status_code=200 if ok else 503
        )

    @get(
        "/metrics",
        summary="Prometheus metrics",
        opt={"scope": "metrics"},
        media_type=MediaType.TEXT,
    )
    async def metrics(self, db: DbDep, ctx: CtxDep) -> Response[bytes]:
        found = await db.transaction(lambda s: figures(s, ctx.clock))
        registry = CollectorRegistry(auto_describe=True)
        registry.register(_Snapshot(found))
        body = generate_latest(registry) + generate_latest(PROCESS)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


class _Snapshot:
    """The database's figures as Prometheus gauges, at the moment of the scrape."""

    def __init__(self, found: Figures) -> None:
        self.found = found

    def collect(self):  # type: ignore[no-untyped-def]
        f = self.found
        messages = GaugeMetricFamily(
            "mailer_messages", "Deliveries by outcome (status)", labels=["outcome"]
        )
        for status, n in sorted(f.messages.items()):
            messages.add_metric([status], n)
        suppressions = GaugeMetricFamily(
            "mailer_suppressions", "Active suppression entries", labels=["reason", "channel"]
        )
        for (reason, channel), n in sorted(f.suppressions.items()):
            suppressions.add_metric([reason, channel], n)
        queue = GaugeMetricFamily(
            "mailer_queue_depth", "Deliveries queued or sending, per campaign", labels=["campaign"]
        )
        for campaign, n in sorted(f.queued.items()):
            queue.add_metric([campaign], n)
        returns = GaugeMetricFamily(
            "mailer_returns", "Bounces, complaints and blocks counted, all runs", labels=["kind"]
        )
        for kind, n in f.returns.items():
            returns.add_metric([kind], n)
        yield messages
        yield suppressions
        yield queue
        yield returns
        yield GaugeMetricFamily(
            "mailer_send_rate",
            "Messages sent per second, over the last minute",
            value=f.sent_per_second,
        )
        yield GaugeMetricFamily(
            "mailer_scheduler_lag_seconds",
            "How late the most overdue one-off firing is (0: none overdue)",
            value=f.scheduler_lag_seconds,
        )
