"""Campaign lifecycle: draft -> scheduled -> sending -> done, with paused and cancelled.

The database holds schedules and states; the scheduler only fires triggers and the firing
claims a run here (`dispatch.start_run`), so two schedulers firing at once send once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.clock import as_utc
from campaigns.context import Context
from campaigns.errors import Conflict, InvalidInput, NotFound
from campaigns.models import Campaign, CampaignRun, Delivery

SEND_AT_SLACK = timedelta(minutes=5)  # "now" typed by a person is a little in the past
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
RUN = CampaignRun.__table__  # type: ignore[attr-defined]


async def _campaign(session: AsyncSession, campaign_id: str) -> Campaign:
    campaign = await session.get(Campaign, campaign_id, with_for_update=True)
    if campaign is None:
        raise NotFound("no campaign with this id")
    return campaign


def _refuse(campaign: Campaign, action: str) -> Conflict:
    return Conflict(
        f"a {campaign.status} campaign cannot be {action}",
        field="status",
        reason="invalid_transition",
    )


async def schedule(
    session: AsyncSession,
    campaign_id: str,
    *,
    send_at: datetime | None,
    cron: str | None,
    timezone: str | None,
    ctx: Context,
) -> Campaign:
    """Schedule once (`send_at`) or recurring (`cron` in `timezone`). The cron expression is
    checked by the caller (the scheduler's parser); the time zone here."""
    campaign = await _campaign(session, campaign_id)
    if campaign.status not in ("draft", "scheduled", "paused"):
        raise _refuse(campaign, "scheduled")
    if (send_at is None) == (cron is None):
        raise InvalidInput("give either send_at or cron", field="send_at")
    if send_at is not None and as_utc(send_at) < ctx.clock.now() - SEND_AT_SLACK:
        raise InvalidInput("send_at is in the past", field="send_at", reason="past")
    open_run = (
        await session.execute(
            sa.select(RUN.c.id).where(RUN.c.campaign_id == campaign_id, RUN.c.status == "sending")
        )
    ).first()
    if open_run is not None:
        raise Conflict(
            "a run of this campaign is still open: resume or cancel it first",
            field="status",
            reason="run_open",
        )
    if cron is not None:
        try:
            ZoneInfo(timezone or "UTC")
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(f"unknown time zone '{timezone}'", field="timezone") from exc
    campaign.send_at = None if send_at is None else as_utc(send_at)
    campaign.cron = cron
    campaign.timezone = (timezone or "UTC") if cron else None
    campaign.status = "scheduled"
    campaign.paused_reason = None
    campaign.updated_at = ctx.clock.now()
    await session.flush()
    return campaign


async def pause(session: AsyncSession, campaign_id: str, ctx: Context) -> Campaign:
    campaign = await _campaign(session, campaign_id)
    if campaign.status not in ("scheduled", "sending"):
        raise _refuse(campaign, "paused")
    campaign.status = "paused"
    campaign.paused_reason = "paused by a marketer"
    campaign.updated_at = ctx.clock.now()
    await session.flush()
    return campaign


async def resume(session: AsyncSession, campaign_id: str, ctx: Context) -> Campaign:
    """Continue where it stopped: `sending` if a run is open, else back to `scheduled`."""
    campaign = await _campaign(session, campaign_id)
    if campaign.status != "paused":
        raise _refuse(campaign, "resumed")
    open_run = (
        await session.execute(
            sa.select(RUN.c.id).where(RUN.c.campaign_id == campaign_id, RUN.c.status == "sending")
        )
    ).first()
    now = ctx.clock.now()
    campaign.status = "sending" if open_run else "scheduled"
    if not open_run and campaign.send_at is not None and campaign.send_at < now:
        campaign.send_at = now  # a one-off whose time passed while paused goes out now
    campaign.paused_reason = None
    campaign.updated_at = now
    await session.flush()
    return campaign


async def cancel(session: AsyncSession, campaign_id: str, ctx: Context) -> Campaign:
    campaign = await _campaign(session, campaign_id)
    if campaign.status in ("done", "cancelled"):
        raise _refuse(campaign, "cancelled")
    campaign.status = "cancelled"
    campaign.updated_at = ctx.clock.now()
    await session.execute(
        sa.update(DELIVERY)
        .where(
            DELIVERY.c.campaign_id == campaign_id,
            sa.or_(
                DELIVERY.c.status == "queued",
                # claimed but not handed over yet (see campaigns/dispatch.py): not sent either
                sa.and_(DELIVERY.c.status == "sending", DELIVERY.c.next_attempt_at.is_not(None)),
            ),
        )
        .values(status="skipped", skip_reason="cancelled")
    )
    await session.execute(
        sa.update(RUN)
        .where(RUN.c.campaign_id == campaign_id, RUN.c.status == "sending")
        .values(status="cancelled", finished_at=ctx.clock.now())
    )
    await session.flush()
    return campaign


async def open_runs(session: AsyncSession) -> list[tuple[str, int]]:
    """(campaign, run) pairs being sent: what a worker picks up after a restart."""
    rows = await session.execute(
        sa.select(RUN.c.campaign_id, RUN.c.id)
        .join(Campaign.__table__, Campaign.__table__.c.id == RUN.c.campaign_id)  # type: ignore[attr-defined]
        .where(RUN.c.status == "sending", Campaign.__table__.c.status == "sending")  # type: ignore[attr-defined]
    )
    return [(str(c), int(r)) for c, r in rows]


async def scheduled_campaigns(session: AsyncSession) -> list[Campaign]:
    rows = await session.execute(sa.select(Campaign).where(Campaign.status == "scheduled"))  # type: ignore[arg-type]
    return list(rows.scalars())


async def fired_runs(session: AsyncSession, campaign_id: str) -> set[datetime]:
    rows = await session.execute(
        sa.select(RUN.c.scheduled_for).where(RUN.c.campaign_id == campaign_id)
    )
    return {as_utc(t) for t in rows.scalars()}
