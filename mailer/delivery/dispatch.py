"""The dispatcher: claim a batch, compose it, hand it to SMTP, record what happened; repeat.

Memory stays flat: one batch of composed messages at a time. Several dispatchers (processes,
hosts) can work on one campaign: claims use SKIP LOCKED on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from campaigns.campaigns import delivery_recipients, load_target
from campaigns.dispatch import (
    Outcome,
    begin_handoff,
    claim_batch,
    finish_run_if_done,
    pause,
    pending_retry_at,
    record_outcomes,
    release,
    suppress_hard_bounces,
)
from campaigns.models import Campaign
from mailer.delivery.compose import CampaignComposer, CampaignInfo, Composed, recipient_of
from mailer.delivery.pool import SmtpPool
from mailer.services import Services

log = logging.getLogger("mailer.dispatch")


@dataclass
class Progress:
    sent: int = 0
    failed: int = 0  # failed and bounced
    retrying: int = 0
    skipped: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Dispatcher:
    def __init__(self, services: Services, pool: SmtpPool | None = None) -> None:
        self.services = services
        policy = services.context.config.delivery
        self.policy = policy
        # A worker passes its one pool, so connections and the rate limit are per relay,
        # not per run; a dispatcher on its own makes (and closes) its own.
        self.owns_pool = pool is None
        self.pool = pool or SmtpPool(
            services.settings, policy.connections, rate=policy.rate_per_second
        )
        self.stopping = asyncio.Event()  # set by a worker that shuts down: finish the batch

    def composer_for(self, campaign: Campaign) -> CampaignComposer:
        settings = self.services.settings
        return CampaignComposer(
            CampaignInfo(
                campaign.id, campaign.name, campaign.purpose, campaign.subject, campaign.template
            ),
            sender=settings.business.sender,
            public_url=settings.public_url,
            templates_dir=settings.templates_dir,
            signer=self.services.signer,
            clock=self.services.context.clock,
            dkim=self.services.dkim,
        )

    async def run(
        self,
        campaign_id: str,
        run_id: int,
        on_batch: Callable[[Progress], None] | None = None,
        wait_for_retries: bool = True,
    ) -> Progress:
        """Send the run until nothing is queued, the campaign is paused or cancelled, or only
        retries remain and `wait_for_retries` is False."""
        services, ctx = self.services, self.services.context
        campaign, _ = await services.transaction(lambda s: load_target(s, campaign_id))
        composer = self.composer_for(campaign)
        progress = Progress()
        failures_in_a_row = 0
        while not self.stopping.is_set():
            status = await services.transaction(lambda s: _status(s, campaign_id))
            if status not in ("sending",):
                break
            claim = await services.transaction(
                lambda s: claim_batch(s, campaign_id, run_id, ctx, self.policy.batch_size)
            )
            ids = claim.ids
            progress.skipped += claim.looked_at - len(ids)
            if not ids:
                if claim.looked_at:
                    continue  # the whole batch was skipped at the gate: take the next one
                if await services.transaction(
                    lambda s: finish_run_if_done(s, campaign_id, run_id, ctx)
                ):
                    break
                retry_at = await services.transaction(
                    lambda s: pending_retry_at(s, campaign_id, run_id)
                )
                if retry_at is None or not wait_for_retries:
                    break
                await asyncio.sleep(
                    min(5.0, max(0.01, (retry_at - ctx.clock.now()).total_seconds()))
                )
                continue
            rows = await services.transaction(partial(delivery_recipients, delivery_ids=ids))
            messages: dict[int, Composed] = {}
            unsendable: list[Outcome] = []
            for row in rows:
                try:
                    messages[row.delivery_id] = composer.compose(recipient_of(row))
                except Exception as exc:
                    unsendable.append(
                        Outcome(
                            row.delivery_id,
                            "permanent",
                            f"cannot be composed: {type(exc).__name__}",
                        )
                    )
            if not messages:  # nothing composes: the setup is broken, not one recipient
                reason = f"paused: messages cannot be composed ({unsendable[0].detail})"
                await services.transaction(partial(release, ids=ids))
                await services.transaction(
                    partial(pause, campaign_id=campaign_id, reason=reason, ctx=ctx)
                )
                log.error("campaign paused: composition failed")
                break

            async def handoff(session, ids=ids, messages=messages, unsendable=unsendable):  # type: ignore[no-untyped-def]
                live = await begin_handoff(session, ids)
                outcomes = await self.pool.send_all(
                    [(i, messages[i]) for i in live if i in messages]
                )
                outcomes += [o for o in unsendable if o.delivery_id in live]
                await record_outcomes(session, outcomes, ctx)
                return live, outcomes

            # Never retried: the messages may already be with the relay.
            live, outcomes = await services.transaction(handoff, retry=False)
            await services.transaction(partial(suppress_hard_bounces, outcomes=outcomes, ctx=ctx))
            progress.skipped += len(ids) - len(live)
            for outcome in outcomes:
                if outcome.kind == "sent":
                    progress.sent += 1
                elif outcome.kind == "permanent":
                    progress.failed += 1
                else:
                    progress.retrying += 1
            # Failures in a row with nothing delivered: the relay, not the recipients.
            if any(o.kind == "sent" for o in outcomes):
                failures_in_a_row = 0
            else:
                failures_in_a_row += len(outcomes)
            if on_batch is not None:
                on_batch(progress)
            if failures_in_a_row >= self.policy.error_budget:
                reason = (
                    f"paused after {failures_in_a_row} failures in a row: {outcomes[-1].detail}"
                )
                log.warning("campaign paused: relay failing")
                await services.transaction(
                    partial(pause, campaign_id=campaign_id, reason=reason, ctx=ctx)
                )
                break
        return progress

    async def close(self) -> None:
        if self.owns_pool:
            await self.pool.close()


async def _status(session, campaign_id: str) -> str | None:  # type: ignore[no-untyped-def]
    campaign = await session.get(Campaign, campaign_id)
    return None if campaign is None else str(campaign.status)
