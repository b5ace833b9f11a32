"""Campaign records (drafts for now), their views with delivery counts, and the recipients of
their deliveries. A campaign's audience is in campaigns/audience/audience.py."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from campaigns.audience.audience import (
    AudienceCounts,
    audience_counts,
    campaign_categories,
    load_target,
)
from campaigns.audience.eligibility import PROFILE
from campaigns.context import Context
from campaigns.db import among
from campaigns.errors import Conflict, InvalidInput, NotFound
from campaigns.models import (
    Campaign,
    CampaignCategory,
    CampaignRun,
    ConsentEvent,
    Contact,
    Delivery,
    OrderCategory,
    ShopOrder,
    Suppression,
)
from campaigns.returns.reputation import Reputation, run_reputation
from campaigns.sending.content import CampaignContent
from campaigns.sending.inputs import CampaignIn
from campaigns.sending.states import CampaignStatus
from campaigns.tracking import TRACKING_PURPOSE, tracking_held

DEFAULT_TEMPLATES = Path("templates/email")


@dataclass(frozen=True)
class DeliveryCounts:
    """A campaign's deliveries by status, and the unsubscribes it caused."""

    queued: int = 0
    skipped: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    unknown: int = 0
    unsubscribed: int = 0
    complaints: int = 0


_COUNTED = frozenset(f.name for f in fields(DeliveryCounts))


@dataclass(frozen=True)
class CampaignView:
    id: str
    name: str
    purpose: str
    categories: tuple[str, ...]
    subject: str
    template: str
    locale: str | None
    status: str
    created_at: datetime
    updated_at: datetime
    counts: DeliveryCounts


@dataclass(frozen=True)
class CampaignDetail(CampaignView):
    audience: AudienceCounts
    paused_reason: str | None
    reputation: Reputation  # of the latest run (C37)


def check_campaign(data: CampaignIn, ctx: Context, templates: Path) -> None:
    """Raise InvalidInput for an unknown purpose, category or template."""
    marketing = ctx.config.marketing
    if data.purpose not in marketing.purposes:
        raise InvalidInput(
            f"unknown purpose '{data.purpose}' (known: {', '.join(marketing.purposes)})",
            field="purpose",
            reason="unknown_purpose",
        )
    if data.purpose == TRACKING_PURPOSE:  # consent to be measured is no consent to be mailed
        raise InvalidInput(
            f"'{TRACKING_PURPOSE}' is not a purpose to mail for: it only allows measuring mail"
            " sent for another purpose (C35)",
            field="purpose",
            reason="not_a_mailing_purpose",
        )
    for i, category in enumerate(data.categories):
        if category not in ctx.config.categories.names:
            raise InvalidInput(
                f"unknown category '{category}'",
                field=f"categories[{i}]",
                reason="unknown_category",
            )
    # Compiles and renders every language variant with a sample context: a template that
    # does not render, or reaches outside its context, is refused now with its name and line.
    CampaignContent(templates, data.template, ctx.config.sender.default_locale).check()


async def create_campaign(
    session: AsyncSession, data: CampaignIn, ctx: Context, templates: Path = DEFAULT_TEMPLATES
) -> CampaignView:
    check_campaign(data, ctx, templates)
    now = ctx.clock.now()
    campaign = Campaign(
        id=uuid.uuid4().hex,
        name=data.name,
        purpose=data.purpose,
        subject=data.subject,
        template=data.template,
        locale=data.locale,
        status=CampaignStatus.DRAFT,
        created_at=now,
        updated_at=now,
    )
    session.add(campaign)
    session.add_all(
        CampaignCategory(campaign_id=campaign.id, category=c)
        for c in dict.fromkeys(data.categories)
    )
    await session.flush()
    return (await campaign_views(session, [campaign]))[0]


# A campaign's content and target can change until it first sends; after that, the
# deliveries' bases and the mails people got would no longer match the record.
EDITABLE = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)


async def update_campaign(
    session: AsyncSession,
    campaign_id: str,
    data: CampaignIn,
    ctx: Context,
    templates: Path = DEFAULT_TEMPLATES,
) -> CampaignView:
    """A draft or scheduled campaign edited, until its first run (Conflict after it: the
    runs' deliveries and reports keep the content they were sent with). Never commits."""
    # Locked: a firing that starts a run meanwhile waits, or this waits for it.
    campaign = await session.get(Campaign, campaign_id, with_for_update=True)
    if campaign is None:
        raise NotFound("no campaign with this id")
    run = CampaignRun.__table__  # type: ignore[attr-defined]
    ran = await session.execute(
        sa.select(run.c.id).where(run.c.campaign_id == campaign_id).limit(1)
    )
    if campaign.status not in EDITABLE or ran.first() is not None:
        raise Conflict(
            "a campaign that has sent can no longer be edited",
            reason="not_editable",
        )
    check_campaign(data, ctx, templates)
    campaign.name, campaign.purpose, campaign.subject = data.name, data.purpose, data.subject
    campaign.template, campaign.locale = data.template, data.locale
    campaign.updated_at = ctx.clock.now()
    await session.execute(
        sa.delete(CampaignCategory).where(col(CampaignCategory.campaign_id) == campaign_id)
    )
    session.add_all(
        CampaignCategory(campaign_id=campaign_id, category=c)
        for c in dict.fromkeys(data.categories)
    )
    await session.flush()
    return (await campaign_views(session, [campaign]))[0]


async def list_campaigns(
    session: AsyncSession, limit: int | None = None, offset: int = 0
) -> list[CampaignView]:
    """Newest first; a page of them with `limit` and `offset`."""
    rows = await session.execute(
        sa.select(Campaign)
        .order_by(col(Campaign.created_at).desc(), col(Campaign.id))
        .limit(limit)
        .offset(offset)
    )
    return await campaign_views(session, list(rows.scalars()))


async def campaign_count(session: AsyncSession) -> int:
    return int(
        (await session.execute(sa.select(sa.func.count()).select_from(Campaign))).scalar_one()
    )


async def campaign_detail(session: AsyncSession, campaign_id: str, ctx: Context) -> CampaignDetail:
    campaign, target = await load_target(session, campaign_id)
    (view,) = await campaign_views(session, [campaign])
    audience = await audience_counts(session, target, ctx)
    run = CampaignRun.__table__  # type: ignore[attr-defined]
    latest = (
        await session.execute(
            sa.select(sa.func.max(run.c.id)).where(run.c.campaign_id == campaign_id)
        )
    ).scalar_one_or_none()
    return CampaignDetail(
        **vars(view),
        audience=audience,
        paused_reason=campaign.paused_reason,
        reputation=await run_reputation(session, latest),
    )


async def campaign_views(
    session: AsyncSession, campaigns: Sequence[Campaign]
) -> list[CampaignView]:
    ids = [c.id for c in campaigns]
    categories = await campaign_categories(session, ids)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    if ids:
        delivery = Delivery.__table__  # type: ignore[attr-defined]
        for campaign_id, status, n in await session.execute(
            sa.select(delivery.c.campaign_id, delivery.c.status, sa.func.count())
            .where(delivery.c.campaign_id.in_(ids))
            .group_by(delivery.c.campaign_id, delivery.c.status)
        ):
            if status in _COUNTED:  # a status the counts do not show is left out
                counts[campaign_id][status] = n
        caused = {"unsubscribe": "unsubscribed", "complaint": "complaints"}  # reason -> count
        for campaign_id, reason, n in await session.execute(
            sa.select(col(Suppression.campaign_id), col(Suppression.reason), sa.func.count())
            .where(col(Suppression.campaign_id).in_(ids), col(Suppression.reason).in_(caused))
            .group_by(col(Suppression.campaign_id), col(Suppression.reason))
        ):
            counts[str(campaign_id)][caused[reason]] = n
    return [
        CampaignView(
            id=c.id,
            name=c.name,
            purpose=c.purpose,
            categories=tuple(categories[c.id]),
            subject=c.subject,
            template=c.template,
            locale=c.locale,
            status=c.status,
            created_at=c.created_at,
            updated_at=c.updated_at,
            counts=DeliveryCounts(**counts[c.id]),
        )
        for c in campaigns
    ]


@dataclass(frozen=True)
class DeliveryRecipient:
    """What the composer needs about one delivery: who, in which language, and on which basis
    (for the footer's "why you receive this")."""

    delivery_id: int
    contact_id: str
    email: str
    name: str | None
    locale: str | None
    basis_kind: str
    basis_date: datetime
    purpose: str | None
    categories: tuple[str, ...]
    tracked: bool = False  # consent for tracking stands now: tracked links, a pixel (C35)


async def delivery_recipients(
    session: AsyncSession, delivery_ids: Sequence[int]
) -> list[DeliveryRecipient]:
    delivery, contact = Delivery.__table__, Contact.__table__  # type: ignore[attr-defined]
    consent, order = ConsentEvent.__table__, ShopOrder.__table__  # type: ignore[attr-defined]
    rows = await session.execute(
        sa.select(
            delivery.c.id,
            contact.c.id,
            contact.c.email,
            contact.c.name,
            contact.c.locale,
            delivery.c.basis_kind,
            consent.c.captured_at,
            consent.c.purpose,
            order.c.placed_at,
            order.c.id.label("order_id"),
            sa.func.coalesce(tracking_held(), False).label("tracked"),
        )
        .select_from(
            delivery.join(contact, contact.c.id == delivery.c.contact_id)
            .outerjoin(consent, consent.c.id == delivery.c.consent_event_id)
            .outerjoin(order, order.c.id == delivery.c.order_id)
            .outerjoin(PROFILE, PROFILE.c.contact_id == delivery.c.contact_id)
        )
        .where(among(delivery.c.id, delivery_ids, session))
        .order_by(delivery.c.id)
    )
    found = rows.all()
    order_ids = [row.order_id for row in found if row.order_id]
    categories: dict[str, list[str]] = defaultdict(list)
    if order_ids:
        for order_id, category in await session.execute(
            sa.select(col(OrderCategory.order_id), col(OrderCategory.category))
            .where(among(col(OrderCategory.order_id), order_ids, session))
            .order_by(col(OrderCategory.category))
        ):
            categories[order_id].append(category)
    return [
        DeliveryRecipient(
            delivery_id=row[0],
            contact_id=row[1],
            email=row[2],
            name=row[3],
            locale=row[4],
            basis_kind=row[5],
            basis_date=row[6] if row[5] == "consent" else row[8],
            purpose=row[7],
            categories=tuple(categories[row.order_id]) if row.order_id else (),
            tracked=bool(row.tracked),
        )
        for row in found
    ]


@dataclass(frozen=True)
class DeliveryLine:
    """One delivery of a contact's, with the basis it was queued under (the console)."""

    campaign: str
    status: str
    queued_at: datetime
    sent_at: datetime | None
    basis_kind: str | None  # consent | soft_opt_in
    consent_event_id: int | None
    order_id: str | None
    skip_reason: str | None


async def deliveries_of(
    session: AsyncSession, contact_id: str, limit: int = 50
) -> list[DeliveryLine]:
    """A contact's deliveries, newest first."""
    delivery = Delivery.__table__  # type: ignore[attr-defined]
    rows = await session.execute(
        sa.select(
            col(Campaign.name),
            delivery.c.status,
            delivery.c.queued_at,
            delivery.c.sent_at,
            delivery.c.basis_kind,
            delivery.c.consent_event_id,
            delivery.c.order_id,
            delivery.c.skip_reason,
        )
        .join(Campaign, col(Campaign.id) == delivery.c.campaign_id)
        .where(delivery.c.contact_id == contact_id)
        .order_by(delivery.c.id.desc())
        .limit(limit)
    )
    return [DeliveryLine(*row) for row in rows.all()]


@dataclass(frozen=True)
class RunView:
    """One firing of a campaign: when it was due, how it went, which processes sent it."""

    id: int
    scheduled_for: datetime
    status: str
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, int]  # deliveries by status
    handed_by: dict[str, int]  # sending process (host:pid) -> deliveries it handed to SMTP


async def campaign_runs(
    session: AsyncSession, campaign_id: str, with_senders: bool = True
) -> list[RunView]:
    """The campaign's runs, newest first (NotFound for an unknown campaign). Without the
    senders (`handed_by` empty) the counts come from an index alone: fast at any size."""
    if await session.get(Campaign, campaign_id) is None:
        raise NotFound("no campaign with this id")
    delivery = Delivery.__table__  # type: ignore[attr-defined]
    runs = (
        (
            await session.execute(
                sa.select(CampaignRun)
                .where(col(CampaignRun.campaign_id) == campaign_id)
                .order_by(col(CampaignRun.id).desc())
            )
        )
        .scalars()
        .all()
    )
    counts: dict[int, dict[str, int]] = {run.id: {} for run in runs if run.id is not None}
    senders: dict[int, dict[str, int]] = {run_id: {} for run_id in counts}
    sender = delivery.c.handed_by if with_senders else sa.null()
    for run_id, status, handed_by, n in await session.execute(
        sa.select(delivery.c.run, delivery.c.status, sender, sa.func.count())
        .where(delivery.c.campaign_id == campaign_id)
        .group_by(delivery.c.run, delivery.c.status, *([sender] if with_senders else []))
    ):
        if run_id not in counts:
            continue
        counts[run_id][status] = counts[run_id].get(status, 0) + n
        if handed_by is not None:
            senders[run_id][handed_by] = senders[run_id].get(handed_by, 0) + n
    return [
        RunView(
            run.id,
            run.scheduled_for,
            run.status,
            run.started_at,
            run.finished_at,
            counts[run.id],
            senders[run.id],
        )
        for run in runs
        if run.id is not None
    ]


@dataclass(frozen=True)
class RunProgress:
    """A run while it sends: its counts, the rate over the last minute, and when it should be
    done at that rate (None while nothing was sent in that minute)."""

    run_id: int
    status: str
    counts: dict[str, int]
    per_minute: int
    eta: datetime | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return self.total - self.counts.get("queued", 0) - self.counts.get("sending", 0)


PROGRESS_WINDOW = timedelta(minutes=1)


async def latest_run_id(session: AsyncSession, campaign_id: str) -> int | None:
    run = CampaignRun.__table__  # type: ignore[attr-defined]
    latest = await session.execute(
        sa.select(sa.func.max(run.c.id)).where(run.c.campaign_id == campaign_id)
    )
    return latest.scalar_one_or_none()


async def run_progress(session: AsyncSession, run_id: int, now: datetime) -> RunProgress:
    run = await session.get(CampaignRun, run_id)
    if run is None or run.id is None:
        raise NotFound("no run with this id")
    delivery = Delivery.__table__  # type: ignore[attr-defined]
    counts = {
        status: n
        for status, n in await session.execute(
            sa.select(delivery.c.status, sa.func.count())
            .where(delivery.c.run == run_id, delivery.c.campaign_id == run.campaign_id)
            .group_by(delivery.c.status)
        )
    }
    recent = (
        await session.execute(
            sa.select(sa.func.count()).where(
                delivery.c.run == run_id,
                delivery.c.campaign_id == run.campaign_id,
                delivery.c.sent_at >= now - PROGRESS_WINDOW,
            )
        )
    ).scalar_one()
    left = counts.get("queued", 0) + counts.get("sending", 0)
    eta = now + timedelta(minutes=left / recent) if recent and left else None
    return RunProgress(run.id, run.status, counts, int(recent), eta)
