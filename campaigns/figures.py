"""What an operator's metrics read (GET /metrics): counts from the database, so that every
process and host reports the same truth, not its own share. Counts only, never who."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.clock import Clock
from campaigns.models import Campaign, Delivery, RunDomainCount, Suppression
from campaigns.sending.states import CampaignStatus, DeliveryStatus

DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
SUPPRESSION = Suppression.__table__  # type: ignore[attr-defined]
CAMPAIGN = Campaign.__table__  # type: ignore[attr-defined]
COUNTS = RunDomainCount.__table__  # type: ignore[attr-defined]
RATE_WINDOW = timedelta(seconds=60)


@dataclass(frozen=True)
class Figures:
    messages: dict[str, int]  # delivery status -> deliveries
    suppressions: dict[tuple[str, str], int]  # (reason, channel) -> active entries
    queued: dict[str, int]  # campaign id -> deliveries queued or sending
    sent_per_second: float  # over the last minute
    returns: dict[str, int]  # hard_bounces, soft_bounces, complaints, blocks, all runs
    scheduler_lag_seconds: float  # how late the most overdue one-off firing is (0: none)


async def figures(session: AsyncSession, clock: Clock) -> Figures:
    now = clock.now()
    by_status = await session.execute(
        sa.select(DELIVERY.c.status, sa.func.count()).group_by(DELIVERY.c.status)
    )
    by_reason = await session.execute(
        sa.select(SUPPRESSION.c.reason, SUPPRESSION.c.channel, sa.func.count())
        .where(SUPPRESSION.c.lifted_at.is_(None))
        .group_by(SUPPRESSION.c.reason, SUPPRESSION.c.channel)
    )
    queued = await session.execute(
        sa.select(DELIVERY.c.campaign_id, sa.func.count())
        .where(DELIVERY.c.status.in_((DeliveryStatus.QUEUED, DeliveryStatus.SENDING)))
        .group_by(DELIVERY.c.campaign_id)
    )
    sent = await session.execute(
        sa.select(sa.func.count()).where(DELIVERY.c.sent_at > now - RATE_WINDOW)
    )
    kinds = ("hard_bounces", "soft_bounces", "complaints", "blocks")
    returns = (
        await session.execute(
            sa.select(*(sa.func.coalesce(sa.func.sum(COUNTS.c[k]), 0) for k in kinds))
        )
    ).one()
    overdue = (
        await session.execute(
            sa.select(sa.func.min(CAMPAIGN.c.send_at)).where(
                CAMPAIGN.c.status == CampaignStatus.SCHEDULED,
                CAMPAIGN.c.cron.is_(None),
                CAMPAIGN.c.send_at <= now,
            )
        )
    ).scalar_one_or_none()
    return Figures(
        messages={status: n for status, n in by_status.all()},
        suppressions={(reason, channel): n for reason, channel, n in by_reason.all()},
        queued={campaign: n for campaign, n in queued.all()},
        sent_per_second=sent.scalar_one() / RATE_WINDOW.total_seconds(),
        returns=dict(zip(kinds, (int(v) for v in returns), strict=True)),
        scheduler_lag_seconds=0.0 if overdue is None else (now - overdue).total_seconds(),
    )
