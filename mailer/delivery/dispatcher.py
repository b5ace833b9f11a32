"""The dispatcher: claim a batch, compose it, hand it to SMTP, record what happened; repeat.

Memory stays flat: one batch of composed messages at a time. Several dispatchers (processes,
hosts) can work on one campaign: claims use SKIP LOCKED on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.audience.audience import load_target
from campaigns.config import DeliveryPolicy
from campaigns.context import Context
from campaigns.models import Campaign
from campaigns.returns.reputation import add_counts, guard, smtp_tally
from campaigns.sending import pauses
from campaigns.sending.campaigns import DeliveryRecipient, delivery_recipients
from campaigns.sending.ledger import (
    Claim,
    SmtpOutcome,
    begin_handoff,
    claim_batch,
    mark_handing_over,
    pending_retry_at,
    record_outcomes,
    release,
    run_counts,
    suppress_hard_bounces,
)
from campaigns.sending.lifecycle import finish_run_if_done, pause_itself
from campaigns.sending.states import CampaignStatus, DeliveryStatus
from campaigns.tracking import record_links
from mailer.db import Database
from mailer.delivery.compose import CampaignComposer, Composed, Composers, recipient_of
from mailer.delivery.journal import JournalDown, WireJournal, WireRecord
from mailer.delivery.pool import SmtpPool
from mailer.settings import Settings

log = logging.getLogger("mailer.dispatch")
COMPOSE_SLICE = 16  # messages composed between turns of the event loop
CLAIMED_BATCHES = 5  # batches taken by one claim


@dataclass
class Progress:
    sent: int = 0
    failed: int = 0  # failed and bounced
    retrying: int = 0
    skipped: int = 0
    unknown: int = 0  # the connection was lost before the relay's reply (RFC 1047)


Outcomes = list[SmtpOutcome]
HANDOFF_SECONDS = 0.25  # relay time one handoff transaction may take (see HandoffPace)


class HandoffPace:
    """How many messages one handoff transaction hands to SMTP. The transaction holds the
    messages' rows, and on SQLite the database's one write lock, while the relay takes them,
    so a report or an unsubscribe that arrives meanwhile waits for it: each is kept to about
    `HANDOFF_SECONDS` of relay time, whatever the relay's speed. A fast relay takes the whole
    batch in one."""

    def __init__(self, most: int, rate: float = 0, seconds: float = HANDOFF_SECONDS) -> None:
        self.most = most
        self.seconds = seconds
        # Until the relay's speed is known: 20, or what a rate limit lets through meanwhile.
        self.size = max(1, min(most, 20, int(rate * seconds) if rate > 0 else most))

    def chunks(self, ids: list[int]) -> Iterator[list[int]]:
        start = 0
        while start < len(ids):
            size = self.size
            yield ids[start : start + size]
            start += size

    def observe(self, count: int, elapsed: float) -> None:
        if count and elapsed > 0:
            self.size = max(1, min(self.most, int(self.seconds * count / elapsed)))


def default_identity() -> str:
    """This sending process, as the deliveries it hands over name it: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


class Dispatcher:
    """Talks to a small store (the database's transactions over the send ledger), a composer
    factory and an SMTP pool; never to the service container."""

    def __init__(
        self,
        db: Database,
        ctx: Context,
        composers: Composers,
        pool: SmtpPool,
        *,
        owns_pool: bool = False,
        identity: str = "",
        journal: WireJournal | None = None,
    ) -> None:
        self.db = db
        self.journal = journal  # what was on the wire, for recovery after a crash
        self.identity = identity or default_identity()  # recorded on each delivery it hands over
        self.ctx = ctx
        self.composers = composers
        self.policy = ctx.config.delivery
        # A worker passes its one pool, so connections and the rate limit are per relay,
        # not per run; a dispatcher on its own owns (and closes) its pool.
        self.owns_pool = owns_pool
        self.pool = pool
        self.pace = HandoffPace(self.policy.batch_size, self.policy.rate_per_second)
        self.stopping = asyncio.Event()  # set by a worker that shuts down: finish the batch

    async def run(
        self,
        campaign_id: str,
        run_id: int,
        on_batch: Callable[[Progress], None] | None = None,
        wait_for_retries: bool = True,
    ) -> Progress:
        """Send the run until nothing is queued, the campaign is paused or cancelled, or only
        retries remain and `wait_for_retries` is False.

        Two tasks overlap: one claims and composes the next batch while this one hands the
        current batch to SMTP, so the database and the templates never wait for the relay.
        At most one prepared batch waits; whatever is prepared but not handed over when the
        run stops is released (queued again), never left claimed."""
        db = self.db
        campaign, _ = await db.transaction(lambda s: load_target(s, campaign_id))
        composer = self.composers.for_campaign(campaign)
        links = await db.transaction(lambda s: record_links(s, campaign_id, composer.links))
        composer.track(links)
        run = _Run(campaign_id, run_id, composer, wait_for_retries)
        producer = asyncio.create_task(self._prepare(run))
        ended = False  # the producer said it has nothing more
        try:
            while (batch := await run.ready.get()) is not None:
                try:
                    if self.stopping.is_set():  # a worker shutting down: queued again, not sent
                        await db.transaction(partial(release, ids=batch.ids))
                        break
                    if not await self._hand_off(run, batch):
                        break
                    if on_batch is not None:
                        on_batch(run.progress)
                finally:
                    run.ready.task_done()
                    run.claims.release()
            else:
                ended = True
                run.ready.task_done()
        finally:
            run.halt.set()
            while not ended:  # release what was prepared but not handed over
                left = await run.ready.get()
                run.ready.task_done()
                if left is None:
                    ended = True
                else:
                    await db.transaction(partial(release, ids=left.ids))
                    run.claims.release()
            await producer  # raises what the producer raised
        return run.progress

    async def _prepare(self, run: _Run) -> None:
        """Claim and compose batches until there is nothing left to send now; then None.

        One claim takes several batches (`CLAIMED_BATCHES`): the claim's gate query costs about
        as much for a thousand deliveries as for two hundred. They are composed and handed over
        one batch at a time, and a claimed batch not yet handed over is requeued after a crash,
        so what a crash can leave `unknown` stays within one batch (and with the wire journal,
        within what was on the wire)."""
        db = self.db
        try:
            while not (run.halt.is_set() or self.stopping.is_set()):
                claimed = await db.transaction(lambda s: self._claim(s, run))
                if claimed is None:  # paused or cancelled
                    break
                claim, rows = claimed
                run.progress.skipped += claim.looked_at - len(claim.ids)
                if claim.ids:
                    await self._compose_batches(run, claim.ids, rows)
                    continue
                if claim.looked_at:
                    continue  # the whole claim was skipped at the gate: take the next one
                await run.ready.join()  # what is being sent may still end in a retry
                if run.halt.is_set() or await self._nothing_left(run):
                    break
        finally:
            await run.ready.put(None)

    async def _compose_batches(
        self, run: _Run, ids: list[int], rows: list[DeliveryRecipient]
    ) -> None:
        """Compose the claimed deliveries batch by batch, at most one batch ahead of the one
        being sent; when the run halts, give back (release) what was not composed."""
        size = self.policy.batch_size
        row_of = {row.delivery_id: row for row in rows}
        for start in range(0, len(ids), size):
            await run.claims.acquire()
            if run.halt.is_set() or self.stopping.is_set():
                run.claims.release()
                rest = ids[start:]
                await self.db.transaction(partial(release, ids=rest))
                return
            chunk = ids[start : start + size]
            batch_rows = [row_of[i] for i in chunk if i in row_of]
            await run.ready.put(await self._compose(run, chunk, batch_rows))

    async def _nothing_left(self, run: _Run) -> bool:
        """True when the run is finished (or only retries remain and we do not wait);
        otherwise sleep until the first retry is due."""
        db, ctx = self.db, self.ctx
        if await db.transaction(lambda s: finish_run_if_done(s, run.campaign_id, run.run_id, ctx)):
            return True
        retry_at = await db.transaction(lambda s: pending_retry_at(s, run.campaign_id, run.run_id))
        if retry_at is None or not run.wait_for_retries:
            return True
        await asyncio.sleep(min(5.0, max(0.01, (retry_at - ctx.clock.now()).total_seconds())))
        return False

    async def _claim(
        self, session: AsyncSession, run: _Run
    ) -> tuple[Claim, list[DeliveryRecipient]] | None:
        """One transaction: the campaign still sending? then claim a batch and read who."""
        if await _status(session, run.campaign_id) != CampaignStatus.SENDING:
            return None
        ctx = self.ctx
        limit = self.policy.batch_size * CLAIMED_BATCHES
        claim = await claim_batch(session, run.campaign_id, run.run_id, ctx, limit)
        rows = await delivery_recipients(session, claim.ids) if claim.ids else []
        return claim, rows

    async def _compose(
        self, run: _Run, ids: list[int], rows: list[DeliveryRecipient]
    ) -> _ComposedBatch:
        batch = _ComposedBatch(ids)
        for n, row in enumerate(rows, 1):
            if n % COMPOSE_SLICE == 0:
                await asyncio.sleep(0)  # let the SMTP lanes read their replies meanwhile
            try:
                batch.messages[row.delivery_id] = run.composer.compose(recipient_of(row))
            except Exception as exc:
                detail = f"cannot be composed: {type(exc).__name__}"
                batch.unsendable.append(SmtpOutcome(row.delivery_id, "permanent", detail))
        return batch

    async def _hand_off(self, run: _Run, batch: _ComposedBatch) -> bool:
        """Hand one batch to SMTP and record what happened. False: the campaign was paused."""
        db, ctx = self.db, self.ctx
        progress = run.progress
        if not batch.messages:  # nothing composes: the setup is broken, not one recipient
            reason = pauses.not_composable(batch.unsendable[0].detail)
            await db.transaction(partial(release, ids=batch.ids))
            await db.transaction(
                partial(pause_itself, campaign_id=run.campaign_id, reason=reason, ctx=ctx)
            )
            log.error("campaign paused: composition failed")
            return False

        key = secrets.randbits(63)  # the batch's name on its rows (begin_handoff) and journal row

        async def handoff(session: AsyncSession, ids: list[int]) -> tuple[list[int], Outcomes]:
            live = await begin_handoff(session, ids, key)
            outcomes = await self.pool.send_all(
                [(i, batch.messages[i]) for i in live if i in batch.messages], wire
            )
            outcomes += [o for o in batch.unsendable if o.delivery_id in live]
            await record_outcomes(session, outcomes, ctx)
            return live, outcomes

        async def afterwards(session: AsyncSession, said: Outcomes) -> str | None:
            """What SMTP said, in its own short transaction after each handoff: hard bounces
            suppressed, the counts added, the guard asked (C17, C37)."""
            if any(o.hard_bounce for o in said):
                await suppress_hard_bounces(session, outcomes=said, ctx=ctx)
            composed = batch.messages  # one that did not compose has no recipient: not counted
            answers = [
                (composed[o.delivery_id].recipient, o) for o in said if o.delivery_id in composed
            ]
            await add_counts(session, run.run_id, smtp_tally(answers))
            return await guard(session, run.run_id, ctx)

        live: list[int] = []
        outcomes: Outcomes = []
        guarded = None
        wire = await self._wire_record(key, batch.ids)
        committed = False  # all the batch's outcomes are in the ledger: its journal row may go
        try:
            claimed = await db.transaction(
                lambda s: mark_handing_over(s, run.campaign_id, batch.ids, ctx, self.identity, key)
            )
            if claimed is None:  # paused or cancelled since the claim: released, not sent
                committed = True
                return False
            for chunk in self.pace.chunks(claimed):
                started = time.monotonic()
                # Never retried: the messages may already be with the relay.
                handed, said = await db.transaction(partial(handoff, ids=chunk), retry=False)
                self.pace.observe(len(handed), time.monotonic() - started)
                guarded = await db.transaction(partial(afterwards, said=said)) or guarded
                await db.make_way()  # an unsubscribe or a report waiting for the lock goes first
                live += handed
                outcomes += said
            committed = True
        finally:
            if wire is not None:
                await wire.end(finished=committed)
        # A pause by the guard takes effect before the next batch, as a marketer's does.
        progress.skipped += len(claimed) - len(live)
        for outcome in outcomes:
            if outcome.kind == "sent":
                progress.sent += 1
            elif outcome.kind == "permanent":
                progress.failed += 1
            elif outcome.kind == "unknown":
                progress.unknown += 1
            else:
                progress.retrying += 1
        # The error budget counts only failures of the relay itself (refused or lost
        # connections, 421, our login or sender refused), in a row with nothing delivered; a
        # recipient's temporary failure (greylisting) is that recipient's retry, no more.
        if any(o.kind == "sent" for o in outcomes):
            run.failures_in_a_row = 0
        run.failures_in_a_row += sum(o.relay_failure for o in outcomes)
        if guarded is not None:
            log.warning("campaign paused: %s", guarded)
            return False
        if run.failures_in_a_row >= self.policy.error_budget:
            last = next((o.detail for o in reversed(outcomes) if o.relay_failure), "")
            reason = pauses.relay_failing(run.failures_in_a_row, last)
            log.warning("campaign paused: relay failing")
            await db.transaction(
                partial(pause_itself, campaign_id=run.campaign_id, reason=reason, ctx=ctx)
            )
            return False
        return True

    async def _wire_record(self, key: int, ids: list[int]) -> WireRecord | None:
        """The batch's row in the wire journal; None without one, or when it cannot be
        written: the batch goes as before, and a crash makes all of it `unknown`."""
        if self.journal is None:
            return None
        try:
            return await self.journal.open(key, ids, self.pool.size, first=self.pace.size)
        except JournalDown as exc:
            log.warning("%s: a batch goes without it", exc)
            return None

    async def close(self) -> None:
        if self.owns_pool:
            await self.pool.close()


def process_pool(settings: Settings, policy: DeliveryPolicy) -> SmtpPool:
    """This process's share of the relay: `[delivery] connections` and `rate_per_second` are
    for all sending processes of a run together."""
    share = policy.processes
    rate = policy.rate_per_second and max(1, policy.rate_per_second // share)
    return SmtpPool(settings, max(1, policy.connections // share), rate=rate)


async def send_run(
    dispatcher: Dispatcher,
    campaign_id: str,
    run_id: int,
    on_batch: Callable[[Progress], None] | None = None,
) -> Progress:
    """Send a run with `[delivery] processes` processes: this one and helpers
    (`python -m mailer campaigns send ID --run RUN`, configured from the same environment),
    which claim batches of the same run (SKIP LOCKED) and exit when nothing is left to claim.
    Then this process finishes the run: retries, and the last in-flight batches' outcomes."""
    policy = dispatcher.policy
    helpers = []
    if policy.processes > 1 and await _claimable(dispatcher.db, run_id):
        helpers = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mailer", "campaigns", "send", campaign_id,
                "--run", str(run_id), stdout=asyncio.subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
            for _ in range(policy.processes - 1)
        ]  # fmt: skip
    finished = False
    try:
        progress = await dispatcher.run(campaign_id, run_id, on_batch=on_batch)
        finished = not dispatcher.stopping.is_set()
    finally:
        if not finished:  # stopping, failed or cancelled: the helpers finish their batch too
            for helper in helpers:
                if helper.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        helper.terminate()
        codes = [await helper.wait() for helper in helpers]
    if any(codes):
        log.error("a helper sending process exited with %s", codes)
    if helpers:  # what the helpers had in flight when this one found nothing left
        more = await dispatcher.run(campaign_id, run_id, on_batch=on_batch)
        for name in ("sent", "failed", "retrying", "skipped", "unknown"):
            setattr(progress, name, getattr(progress, name) + getattr(more, name))
    return progress


async def _claimable(db: Database, run_id: int) -> bool:
    """Whether the run has queued deliveries: else helpers would only start and stop."""
    counts = await db.transaction(lambda s: run_counts(s, run_id))
    return counts.get(DeliveryStatus.QUEUED, 0) > 0


def _die_with_parent() -> None:
    """In a helper, before exec: SIGTERM when the process that started it dies (Linux), so a
    killed worker leaves no helpers behind that a restarted one would double."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


@dataclass
class _ComposedBatch:
    """Claimed deliveries, composed and waiting to be handed to SMTP."""

    ids: list[int]
    messages: dict[int, Composed] = field(default_factory=dict)
    unsendable: list[SmtpOutcome] = field(default_factory=list)


@dataclass
class _Run:
    """One run being sent: what the two tasks of `Dispatcher.run` share."""

    campaign_id: str
    run_id: int
    composer: CampaignComposer
    wait_for_retries: bool
    progress: Progress = field(default_factory=Progress)
    ready: asyncio.Queue[_ComposedBatch | None] = field(default_factory=lambda: asyncio.Queue(1))
    halt: asyncio.Event = field(default_factory=asyncio.Event)
    claims: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    failures_in_a_row: int = 0


async def _status(session, campaign_id: str) -> str | None:  # type: ignore[no-untyped-def]
    campaign = await session.get(Campaign, campaign_id)
    return None if campaign is None else str(campaign.status)
