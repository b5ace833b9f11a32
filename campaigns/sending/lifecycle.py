"""The campaign lifecycle: schedule, start a run, pause, resume, cancel, finish (the state
machine is in states.py).

The database holds schedules and states; the scheduler only fires triggers and the firing
claims a run here (`start_run`, unique per campaign and scheduled time), so two schedulers
firing at once send once. At most one run of a campaign is open (`sending`) at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.audience.audience import load_target, materialise
from campaigns.clock import as_utc
from campaigns.context import Context
from campaigns.db import dialect_insert, dialect_name
from campaigns.errors import Conflict, InvalidInput, NotFound
from campaigns.models import Campaign, CampaignRun, Delivery
from campaigns.sending import pauses
from campaigns.sending.states import (
    ALLOWED_FROM,
    OPEN_DELIVERIES,
    Action,
    CampaignStatus,
    DeliveryStatus,
    RunStatus,
    may,
    require,
)

SEND_AT_SLACK = timedelta(minutes=5)  # "now" typed by a person is a little in the past
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
RUN = CampaignRun.__table__  # type: ignore[attr-defined]
CAMPAIGN = Campaign.__table__  # type: ignore[attr-defined]

# Parses a crontab expression in a time zone, raising ValueError (or LookupError) that names
# the problem: the scheduler's parser, passed in, so the domain needs no scheduler library.
CronParser = Callable[[str, str], object]


async def _campaign(session: AsyncSession, campaign_id: str) -> Campaign:
    campaign = await session.get(Campaign, campaign_id, with_for_update=True)
    if campaign is None:
        raise NotFound("no campaign with this id")
    return campaign


async def open_run_id(session: AsyncSession, campaign_id: str) -> int | None:
    """The campaign's open run (being sent, or paused mid-send), if any."""
    return (
        await session.execute(
            sa.select(RUN.c.id).where(
                RUN.c.campaign_id == campaign_id, RUN.c.status == RunStatus.SENDING
            )
        )
    ).scalar()


def check_schedule(
    send_at: datetime | None,
    cron: str | None,
    timezone: str | None,
    *,
    parse_cron: CronParser,
) -> None:
    """What a schedule must be, whatever the campaign: a time zone that exists, a cron
    expression the scheduler can fire."""
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(f"unknown time zone '{timezone}'", field="timezone") from exc
    if cron is not None:
        try:
            parse_cron(cron, timezone or "UTC")
        except (ValueError, LookupError) as exc:
            raise InvalidInput(f"cron: {exc}", field="cron") from exc


async def schedule(
    session: AsyncSession,
    campaign_id: str,
    *,
    send_at: datetime | None,
    cron: str | None,
    timezone: str | None,
    parse_cron: CronParser,
    ctx: Context,
) -> Campaign:
    """Schedule once (`send_at`) or recurring (`cron` in `timezone`)."""
    check_schedule(send_at, cron, timezone, parse_cron=parse_cron)
    campaign = await _campaign(session, campaign_id)
    require(campaign.status, Action.SCHEDULE)
    now = ctx.clock.now()
    if (send_at is None) == (cron is None):
        raise InvalidInput("give either send_at or cron", field="send_at")
    if send_at is not None and as_utc(send_at) < now - SEND_AT_SLACK:
        raise InvalidInput("send_at is in the past", field="send_at", reason="past")
    if await open_run_id(session, campaign_id) is not None:
        raise Conflict(
            "a run of this campaign is still open: resume or cancel it first",
            field="status",
            reason="run_open",
        )
    campaign.send_at = None if send_at is None else as_utc(send_at)
    campaign.cron = cron
    campaign.timezone = (timezone or "UTC") if cron else None
    campaign.status = CampaignStatus.SCHEDULED
    campaign.paused_reason = None
    campaign.updated_at = now
    await session.flush()
    return campaign


async def start_run(
    session: AsyncSession,
    campaign_id: str,
    scheduled_for: datetime,
    ctx: Context,
    *,
    allowed: Collection[str] = ALLOWED_FROM[Action.START],
) -> int | None:
    """Claim one firing of a campaign and materialise its audience. Returns the run id, or
    None when this firing was already claimed (it is sent once), the campaign is not in one
    of the `allowed` states (paused or cancelled meanwhile), or a run of it is still open."""
    campaign = await session.get(Campaign, campaign_id, with_for_update=True)
    if campaign is None or campaign.status not in allowed:
        return None
    if await open_run_id(session, campaign_id) is not None:
        return None
    now = ctx.clock.now()
    stmt = (
        dialect_insert(session, RUN)
        .values(
            campaign_id=campaign_id,
            scheduled_for=scheduled_for,
            status=RunStatus.SENDING,
            started_at=now,
        )
        .on_conflict_do_nothing(index_elements=["campaign_id", "scheduled_for"])
        .returning(RUN.c.id)
    )
    run_id = (await session.execute(stmt)).scalar_one_or_none()
    if run_id is None:
        return None
    _, target = await load_target(session, campaign_id)
    campaign.status = CampaignStatus.SENDING
    campaign.updated_at = now
    await materialise(session, target, ctx, run=run_id)
    if dialect_name(session) == "postgresql":
        # The claim's gate query plans on delivery statistics: let them see this run's rows,
        # or a plan made while the table was empty can make each claim a hundred times slower.
        await session.execute(sa.text("ANALYZE delivery"))
    return int(run_id)


async def finish_run_if_done(
    session: AsyncSession, campaign_id: str, run_id: int, ctx: Context
) -> bool:
    """Close the run once none of its deliveries is open; a recurring campaign is then
    scheduled again, a one-off done."""
    open_rows = (
        await session.execute(
            sa.select(sa.func.count())
            .select_from(DELIVERY)
            .where(
                DELIVERY.c.campaign_id == campaign_id,
                DELIVERY.c.run == run_id,
                DELIVERY.c.status.in_(OPEN_DELIVERIES),
            )
        )
    ).scalar_one()
    if open_rows:
        return False
    now = ctx.clock.now()
    await session.execute(
        sa.update(RUN)
        .where(RUN.c.id == run_id, RUN.c.status == RunStatus.SENDING)
        .values(status=RunStatus.DONE, finished_at=now)
    )
    campaign = await session.get(Campaign, campaign_id)
    if campaign is not None and may(campaign.status, Action.FINISH):
        campaign.status = CampaignStatus.SCHEDULED if campaign.cron else CampaignStatus.DONE
        campaign.updated_at = now
    return True


async def pause(session: AsyncSession, campaign_id: str, ctx: Context) -> Campaign:
    """A marketer's pause: refused where it is no transition."""
    campaign = await _campaign(session, campaign_id)
    require(campaign.status, Action.PAUSE)
    _paused(campaign, pauses.by_marketer(), ctx)
    await session.flush()
    return campaign


async def pause_itself(session: AsyncSession, campaign_id: str, reason: str, ctx: Context) -> None:
    """A pause the service makes itself, with why (campaigns/sending/pauses.py: the relay
    failing, nothing composes, the reputation guard); a campaign paused or cancelled meanwhile
    is left as it is."""
    campaign = await _campaign(session, campaign_id)
    if may(campaign.status, Action.PAUSE):
        _paused(campaign, reason, ctx)


def _paused(campaign: Campaign, reason: str, ctx: Context) -> None:
    campaign.status = CampaignStatus.PAUSED
    campaign.paused_reason = reason[: pauses.REASON_LENGTH]
    campaign.updated_at = ctx.clock.now()


async def resume(session: AsyncSession, campaign_id: str, ctx: Context) -> Campaign:
    """Continue where it stopped: `sending` if a run is open, else back to `scheduled`."""
    campaign = await _campaign(session, campaign_id)
    require(campaign.status, Action.RESUME)
    open_run = await open_run_id(session, campaign_id) is not None
    now = ctx.clock.now()
    campaign.status = CampaignStatus.SENDING if open_run else CampaignStatus.SCHEDULED
    if not open_run and campaign.send_at is not None and campaign.send_at < now:
        campaign.send_at = now  # a one-off whose time passed while paused goes out now
    campaign.paused_reason = None
    campaign.updated_at = now
    await session.flush()
    return campaign


async def cancel(session: AsyncSession, campaign_id: str, ctx: Context) -> Campaign:
    campaign = await _campaign(session, campaign_id)
    require(campaign.status, Action.CANCEL)
    campaign.status = CampaignStatus.CANCELLED
    campaign.updated_at = ctx.clock.now()
    await session.execute(
        sa.update(DELIVERY)
        .where(
            DELIVERY.c.campaign_id == campaign_id,
            sa.or_(
                DELIVERY.c.status == DeliveryStatus.QUEUED,
                # claimed but not handed over yet (see ledger.py): not sent either
                sa.and_(
                    DELIVERY.c.status == DeliveryStatus.SENDING,
                    DELIVERY.c.next_attempt_at.is_not(None),
                ),
            ),
        )
        .values(status=DeliveryStatus.SKIPPED, skip_reason="cancelled")
    )
    await session.execute(
        sa.update(RUN)
        .where(RUN.c.campaign_id == campaign_id, RUN.c.status == RunStatus.SENDING)
        .values(status=RunStatus.CANCELLED, finished_at=ctx.clock.now())
    )
    await session.flush()
    return campaign


async def open_runs(session: AsyncSession) -> list[tuple[str, int]]:
    """(campaign, run) pairs being sent: what a worker picks up after a restart."""
    rows = await session.execute(
        sa.select(RUN.c.campaign_id, RUN.c.id)
        .join(CAMPAIGN, CAMPAIGN.c.id == RUN.c.campaign_id)
        .where(RUN.c.status == RunStatus.SENDING, CAMPAIGN.c.status == CampaignStatus.SENDING)
    )
    return [(str(c), int(r)) for c, r in rows]


async def scheduled_campaigns(session: AsyncSession) -> list[Campaign]:
    rows = await session.execute(
        sa.select(Campaign).where(CAMPAIGN.c.status == CampaignStatus.SCHEDULED)
    )
    return list(rows.scalars())


async def fired_runs(session: AsyncSession, campaign_id: str) -> set[datetime]:
    rows = await session.execute(
        sa.select(RUN.c.scheduled_for).where(RUN.c.campaign_id == campaign_id)
    )
    return {as_utc(t) for t in rows.scalars()}
