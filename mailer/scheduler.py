"""The worker: APScheduler fires triggers; the database holds the truth.

Each scheduled campaign gets a trigger (a DateTrigger for `send_at`, a CronTrigger for `cron`
in its time zone). A firing claims its run in the database (`start_run`, unique per campaign
and scheduled time), so two workers firing at once send once, then dispatches it. On start,
and every few seconds, the worker re-reads the schedules, turns stale in-flight messages into
`unknown`, picks up runs left open by a stopped worker, and fires any firing it missed within
the grace period: a restart loses no schedule, and a missed firing runs once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from campaigns.context import Context
from campaigns.models import Campaign
from campaigns.rights.retention import Cursor, Due, retention_batch
from campaigns.sending.ledger import handoffs_in_flight, recover_in_flight
from campaigns.sending.lifecycle import fired_runs, open_runs, scheduled_campaigns, start_run
from campaigns.sending.senders import beat, leave
from mailer.db import Database
from mailer.delivery.dispatcher import Dispatcher, default_identity, send_run
from mailer.delivery.journal import JournalDown, WireJournal
from mailer.delivery.pool import SmtpPool

log = logging.getLogger("mailer.worker")
GRACE = timedelta(hours=1)  # a firing missed by less than this still runs, once
SYNC_SECONDS = 5
ACKNOWLEDGE_SECONDS = 5  # an objection or acknowledgement left by a restart, within this
RETENTION_HOUR = 3  # UTC: the daily retention job runs at 03:30


def cron_trigger(expression: str, timezone: str | None) -> CronTrigger:
    """Parse a crontab expression; raises ValueError naming the problem."""
    return CronTrigger.from_crontab(expression, timezone=timezone or "UTC")


def next_firing(campaign: Campaign, now: datetime) -> datetime | None:
    """When a scheduled campaign fires next, in its time zone (the console shows it)."""
    if campaign.status not in ("scheduled", "sending", "paused"):
        return None
    if campaign.send_at is not None:
        return campaign.send_at if campaign.send_at > now else None
    if campaign.cron:
        fire = cron_trigger(campaign.cron, campaign.timezone).get_next_fire_time(None, now)
        return fire if isinstance(fire, datetime) else None
    return None


def due_firings(campaign: Campaign, now: datetime, already: set[datetime]) -> list[datetime]:
    """The firings of `campaign` due at `now` (within the grace period) not yet run. A cron
    firing from before the campaign was (re)scheduled is not due: scheduling at 09:45 with
    `0 9 * * *` means tomorrow at nine, not now."""
    if campaign.send_at is not None:
        due = [campaign.send_at] if now - GRACE <= campaign.send_at <= now else []
    elif campaign.cron:
        trigger = cron_trigger(campaign.cron, campaign.timezone)
        due, moment = [], max(now - GRACE, campaign.updated_at)
        while True:
            fire = trigger.get_next_fire_time(None, moment)
            if fire is None or fire > now:
                break
            due.append(fire.astimezone(UTC))
            moment = fire + timedelta(seconds=1)
    else:
        due = []
    return [d for d in due if d not in already]


async def run_retention(db: Database, ctx: Context) -> Due:
    """What is past its period, batch after batch (each its own short transaction) until
    nothing is: the totals, by reason."""
    total = Due(0, 0, 0, 0)
    cursor: Cursor | None = Cursor()
    while cursor is not None:
        done, cursor = await db.transaction(partial(retention_batch, ctx=ctx, after=cursor))
        total = Due(*(a + b for a, b in zip(astuple(total), astuple(done), strict=True)))
    return total


class Worker:
    """Fires triggers and runs dispatches, all of them over one SMTP pool (the relay's
    connections and rate limit are per process, not per run)."""

    def __init__(
        self,
        db: Database,
        ctx: Context,
        pool: SmtpPool,
        dispatcher_for: Callable[[SmtpPool], Dispatcher],
        objections_left: Callable[[], Awaitable[int]] | None = None,
        identity: str = "",
        journal: WireJournal | None = None,
    ) -> None:
        self.db = db
        self.journal = journal  # read when recovering a crashed sender's batches
        self.identity = identity or default_identity()  # its beat, for sharing the relay
        self.ctx = ctx
        self.pool = pool
        self.dispatcher_for = dispatcher_for
        # Follows up the objections, and sends the acknowledgements, that the process which
        # took them did not (a restart, a relay down): the durable half (C15).
        self.objections_left = objections_left
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.dispatching: dict[tuple[str, int], asyncio.Task[Any]] = {}
        self.dispatchers: set[Dispatcher] = set()

    async def beat(self) -> None:
        """This worker is alive: take its part of the relay's connections and rate, shared
        among the workers that beat. Its own job, so a long tick (a big run materialised)
        never makes the others think it is gone."""
        ctx = self.ctx
        live = await self.db.transaction(lambda s: beat(s, self.identity, ctx.clock.now()))
        self.pool.share(live)

    async def start(self) -> None:
        await self.beat()
        self._every(self.beat, IntervalTrigger(seconds=SYNC_SECONDS), "beat")
        await self.tick()
        if self.objections_left is not None:
            await self.objections_left()  # what a restart left, at once
        self._every(self.tick, IntervalTrigger(seconds=SYNC_SECONDS), "sync")
        if self.objections_left is not None:
            self._every(
                self.objections_left, IntervalTrigger(seconds=ACKNOWLEDGE_SECONDS), "acknowledge"
            )
        # Retention runs by itself (C34), every day at a quiet hour.
        self._every(
            self.retention, CronTrigger(hour=RETENTION_HOUR, minute=30, timezone=UTC), "retention"
        )
        self.scheduler.start()

    def _every(self, job: Callable[[], Awaitable[Any]], trigger: Any, name: str) -> None:
        """A job of this worker's own: one at a time, missed runs coalesced into one."""
        self.scheduler.add_job(job, trigger, id=name, max_instances=1, coalesce=True)

    async def retention(self) -> Due:
        done = await run_retention(self.db, self.ctx)
        if done:
            log.info(
                "retention: %d inactive contacts erased, %d old deliveries, %d old reports,"
                " %d unconfirmed sign-ups and %d old clicks and opens deleted",
                done.inactive_contacts,
                done.old_deliveries,
                done.old_reports,
                done.unconfirmed_signups,
                done.old_tracking_events,
            )
        return done

    async def stop(self, drain_seconds: float = 30) -> None:
        """Stop firing; let running dispatches finish their batch (what is cancelled mid-
        handoff would only become `unknown`)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for dispatcher in self.dispatchers:
            dispatcher.stopping.set()
        tasks = list(self.dispatching.values())
        _, late = await asyncio.wait(tasks, timeout=drain_seconds) if tasks else (set(), set())
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.pool.close()
        await self.db.transaction(lambda s: leave(s, self.identity))

    async def tick(self) -> None:
        """Recover, catch up on due firings, keep triggers in step with the database."""
        db, ctx = self.db, self.ctx
        await self.recover()
        for campaign in await db.transaction(scheduled_campaigns):
            already = await db.transaction(partial(fired_runs, campaign_id=campaign.id))
            for moment in due_firings(campaign, ctx.clock.now(), already):
                await self.fire(campaign.id, moment)
            self._ensure_trigger(campaign)
        for campaign_id, run_id in await db.transaction(open_runs):
            self._dispatch(campaign_id, run_id)

    async def recover(self) -> None:
        """What a stopped sender left claimed past its lease: queued again, settled from the
        wire journal, or `unknown` (invariant 6); then the journal's rows no batch needs."""
        db, ctx, journal = self.db, self.ctx, self.journal
        for attempt in range(2):  # a failed connection is replaced: once more (a restart)
            try:
                unknown = await db.transaction(lambda s: recover_in_flight(s, ctx, journal))
                break
            except JournalDown as exc:
                if attempt:  # settled without it: all that was handed over is unknown
                    log.warning("%s: recovery goes without it", exc)
                    unknown = await db.transaction(lambda s: recover_in_flight(s, ctx))
        if unknown:
            log.warning("%d in-flight messages marked unknown after a stop", unknown)
        if journal is not None:
            lease = timedelta(seconds=ctx.config.delivery.lease_seconds)
            try:
                old = await journal.older_than(ctx.clock.now() - lease)
                needed = await db.transaction(lambda s: handoffs_in_flight(s, old))
                await journal.forget(set(old) - needed)
            except JournalDown as exc:
                log.warning("%s: old rows stay until the next tick", exc)

    def _ensure_trigger(self, campaign: Campaign) -> None:
        job_id = f"campaign:{campaign.id}"
        if campaign.cron:
            trigger = cron_trigger(campaign.cron, campaign.timezone)
            self.scheduler.add_job(
                self._fire_now,
                trigger,
                args=[campaign.id],
                id=job_id,
                replace_existing=True,
                misfire_grace_time=int(GRACE.total_seconds()),
                coalesce=True,
            )
        elif campaign.send_at is not None and campaign.send_at > self.ctx.clock.now():
            self.scheduler.add_job(
                self._fire_now,
                "date",
                run_date=campaign.send_at,
                args=[campaign.id],
                id=job_id,
                replace_existing=True,
                misfire_grace_time=int(GRACE.total_seconds()),
            )

    async def _fire_now(self, campaign_id: str) -> None:
        await self.tick()  # the due firing is found and claimed there, exactly once

    async def fire(self, campaign_id: str, scheduled_for: datetime) -> int | None:
        db, ctx = self.db, self.ctx
        run_id = await db.transaction(lambda s: start_run(s, campaign_id, scheduled_for, ctx))
        if run_id is not None:
            log.info("campaign run %s started", run_id)
            self._dispatch(campaign_id, run_id)
        return run_id

    def _dispatch(self, campaign_id: str, run_id: int) -> None:
        key = (campaign_id, run_id)
        if key in self.dispatching and not self.dispatching[key].done():
            return
        self.dispatching[key] = asyncio.create_task(self._send(campaign_id, run_id))

    async def _send(self, campaign_id: str, run_id: int) -> None:
        dispatcher = self.dispatcher_for(self.pool)
        self.dispatchers.add(dispatcher)
        try:
            await send_run(dispatcher, campaign_id, run_id)
        except Exception:
            log.exception("dispatch of run %s stopped", run_id)
        finally:
            self.dispatchers.discard(dispatcher)
            await dispatcher.close()

    async def idle(self) -> None:
        """Wait until every dispatch this worker started has finished (tests, `send --now`)."""
        while any(not t.done() for t in self.dispatching.values()):
            await asyncio.gather(*self.dispatching.values(), return_exceptions=True)
