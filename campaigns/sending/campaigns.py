"""Campaign records (drafts for now) and their audiences: counts, explanations, deliveries."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from campaigns.audience.eligibility import (
    ELIGIBLE,
    EXCLUSION_REASONS,
    AudienceRules,
    CampaignTarget,
    audience_query,
)
from campaigns.clock import add_months
from campaigns.context import Context
from campaigns.db import among
from campaigns.errors import InvalidInput, NotFound
from campaigns.models import (
    Campaign,
    CampaignCategory,
    ConsentEvent,
    Contact,
    Delivery,
    OrderCategory,
    ShopOrder,
    Suppression,
)
from campaigns.schemas import CampaignIn
from campaigns.sending.content import CampaignContent

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
class AudienceCounts:
    """Who the campaign may reach now, by basis, and who it may not, by reason."""

    eligible: int
    by_basis: dict[str, int]
    excluded: dict[str, int]


@dataclass(frozen=True)
class CampaignDetail(CampaignView):
    audience: AudienceCounts


@dataclass(frozen=True)
class BasisEvidence:
    """The evidence for the basis: a consent event, or an order (soft opt-in). Fields that do
    not apply to the kind are None."""

    kind: Literal["consent", "soft_opt_in"]
    consent_event_id: str | None = None
    purpose: str | None = None
    captured_at: datetime | None = None
    wording_version: str | None = None
    channel: str | None = None
    order_id: str | None = None
    placed_at: datetime | None = None
    categories: tuple[str, ...] | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Explanation:
    """Why a contact may (or may not) receive a campaign."""

    contact_id: str
    campaign_id: str
    eligible: bool
    reason: str | None  # the exclusion reason when not eligible
    basis: BasisEvidence | None  # the basis it holds (also when capped by frequency)
    detail: str


def check_campaign(data: CampaignIn, ctx: Context, templates: Path) -> None:
    """Raise InvalidInput for an unknown purpose, category or template."""
    marketing = ctx.config.marketing
    if data.purpose not in marketing.purposes:
        raise InvalidInput(
            f"unknown purpose '{data.purpose}' (known: {', '.join(marketing.purposes)})",
            field="purpose",
            reason="unknown_purpose",
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
        status="draft",
        created_at=now,
        updated_at=now,
    )
    session.add(campaign)
    session.add_all(
        CampaignCategory(campaign_id=campaign.id, category=c)
        for c in dict.fromkeys(data.categories)
    )
    await session.flush()
    return (await _views(session, [campaign]))[0]


async def list_campaigns(session: AsyncSession) -> list[CampaignView]:
    rows = await session.execute(sa.select(Campaign).order_by(col(Campaign.created_at).desc()))
    return await _views(session, list(rows.scalars()))


async def load_target(session: AsyncSession, campaign_id: str) -> tuple[Campaign, CampaignTarget]:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("no campaign with this id")
    categories = await _categories(session, [campaign_id])
    target = CampaignTarget(campaign.id, campaign.purpose, tuple(categories[campaign_id]))
    return campaign, target


async def campaign_detail(session: AsyncSession, campaign_id: str, ctx: Context) -> CampaignDetail:
    campaign, target = await load_target(session, campaign_id)
    (view,) = await _views(session, [campaign])
    audience = await audience_counts(session, target, ctx)
    return CampaignDetail(**vars(view), audience=audience)


async def audience_counts(
    session: AsyncSession, target: CampaignTarget, ctx: Context
) -> AudienceCounts:
    """Counts by basis and by exclusion reason, from the same query that sends."""
    rules = AudienceRules.for_campaign(target, ctx.config, ctx.clock.now())
    audience = audience_query(rules).subquery("audience")
    rows = await session.execute(
        sa.select(audience.c.reason, audience.c.basis_kind, sa.func.count()).group_by(
            audience.c.reason, audience.c.basis_kind
        )
    )
    by_basis = {"consent": 0, "soft_opt_in": 0}
    excluded = dict.fromkeys(EXCLUSION_REASONS, 0)
    for reason, basis_kind, n in rows:
        if reason == ELIGIBLE:
            by_basis[basis_kind] += n
        else:
            excluded[reason] += n
    return AudienceCounts(eligible=sum(by_basis.values()), by_basis=by_basis, excluded=excluded)


async def explain(
    session: AsyncSession, contact_id: str, campaign_id: str, ctx: Context
) -> Explanation:
    """Why this contact may (or may not) receive this campaign, with the evidence."""
    _, target = await load_target(session, campaign_id)
    if await session.get(Contact, contact_id) is None:
        raise NotFound("no contact with this id")
    rules = AudienceRules.for_campaign(target, ctx.config, ctx.clock.now())
    audience = audience_query(rules, [contact_id]).subquery("audience")
    row = (
        await session.execute(
            sa.select(
                audience.c.reason,
                audience.c.basis_kind,
                audience.c.consent_event_id,
                audience.c.order_id,
            )
        )
    ).one()
    basis = await _basis_evidence(
        session, row.basis_kind, row.consent_event_id, row.order_id, target, ctx
    )
    eligible = row.reason == ELIGIBLE
    return Explanation(
        contact_id=contact_id,
        campaign_id=campaign_id,
        eligible=eligible,
        reason=None if eligible else row.reason,
        basis=basis,
        detail=_sentence(row.reason, basis, target),
    )


async def _basis_evidence(
    session: AsyncSession,
    kind: str | None,
    consent_event_id: int | None,
    order_id: str | None,
    target: CampaignTarget,
    ctx: Context,
) -> BasisEvidence | None:
    if kind == "consent" and consent_event_id is not None:
        event = await session.get(ConsentEvent, consent_event_id)
        assert event is not None
        return BasisEvidence(
            kind="consent",
            consent_event_id=str(event.id),
            purpose=event.purpose,
            captured_at=event.captured_at,
            wording_version=event.wording_version,
            channel=event.channel,
        )
    if kind == "soft_opt_in" and order_id is not None:
        order = await session.get(ShopOrder, order_id)
        assert order is not None
        bought = (
            await session.execute(
                sa.select(col(OrderCategory.category))
                .where(col(OrderCategory.order_id) == order_id)
                .order_by(col(OrderCategory.category))
            )
        ).scalars()
        return BasisEvidence(
            kind="soft_opt_in",
            order_id=order.id,
            placed_at=order.placed_at,
            categories=tuple(bought),
            until=add_months(order.placed_at, ctx.config.marketing.soft_opt_in_months),
        )
    return None


_EXCLUSION_TEXT = {
    "suppressed": "the address is on the suppression list (an objection or a delivery failure)",
    "no_basis": "there is no consent for this purpose and no qualifying order",
    "third_party_purpose": "the purpose is for third-party offers, which soft opt-in never"
    " covers, and there is no consent for it",
    "opted_out_at_collection": "the customer used the opt-out when the address was collected",
    "lapsed": "the last qualifying order for these categories is older than the soft-opt-in window",
    "category_mismatch": "the campaign's categories are not similar to what the customer bought",
    "frequency_cap": "the contact has reached the frequency cap for marketing mail",
}


def _sentence(reason: str, basis: BasisEvidence | None, target: CampaignTarget) -> str:
    if reason == ELIGIBLE and basis is not None:
        if basis.kind == "consent":
            return (
                f"consent for '{target.purpose}' given on {basis.captured_at:%Y-%m-%d}"
                f" (wording version {basis.wording_version})"
            )
        return (
            f"customer who bought {', '.join(basis.categories or [])} on"
            f" {basis.placed_at:%Y-%m-%d} (order {basis.order_id}); soft opt-in until"
            f" {basis.until:%Y-%m-%d}"
        )
    return f"excluded: {_EXCLUSION_TEXT[reason]}"


async def materialise(
    session: AsyncSession, target: CampaignTarget, ctx: Context, run: int = 0
) -> int:
    """Insert one delivery per eligible contact, with its basis, in one INSERT ... SELECT.

    Contacts over the frequency cap get a `skipped` row with that reason (C12: skipped, not
    queued for later). Unique per (campaign, run, contact): calling it again adds only
    contacts that were not there yet. Returns the rows added. Never commits.
    """
    now = ctx.clock.now()
    rules = AudienceRules.for_campaign(target, ctx.config, now)
    audience = audience_query(rules).subquery("audience")
    capped = audience.c.reason == "frequency_cap"
    rows = sa.select(
        sa.literal(target.id, sa.String),
        sa.literal(run, sa.Integer),
        audience.c.contact_id,
        sa.case((capped, "skipped"), else_="queued"),
        sa.case((capped, "frequency_cap"), else_=sa.null()),
        audience.c.basis_kind,
        sa.case((audience.c.basis_kind == "consent", audience.c.consent_event_id)),
        sa.case((audience.c.basis_kind == "soft_opt_in", audience.c.order_id)),
        sa.literal(now, Delivery.__table__.c.queued_at.type),  # type: ignore[attr-defined]
    )
    delivery = Delivery.__table__  # type: ignore[attr-defined]
    already = sa.exists().where(
        delivery.c.campaign_id == target.id,
        delivery.c.run == run,
        delivery.c.contact_id == audience.c.contact_id,
    )
    rows = rows.where(audience.c.reason.in_((ELIGIBLE, "frequency_cap")), ~already)
    # In contact order, the unique and the contact index take their entries in key order.
    rows = rows.order_by(audience.c.contact_id)
    columns = [
        "campaign_id", "run", "contact_id", "status", "skip_reason", "basis_kind",
        "consent_event_id", "order_id", "queued_at",
    ]  # fmt: skip
    # Contacts that have a delivery of this run already are left out by the select, not by
    # ON CONFLICT, whose speculative insertion cost a fifth of the time. Two materialisations
    # of one run never race: the run is claimed once, under the campaign's row lock
    # (dispatch.start_run); if they did, the unique key would fail one, never duplicate.
    result = await session.execute(delivery.insert().from_select(columns, rows))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def _categories(session: AsyncSession, ids: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    rows = await session.execute(
        sa.select(col(CampaignCategory.campaign_id), col(CampaignCategory.category))
        .where(col(CampaignCategory.campaign_id).in_(ids))
        .order_by(col(CampaignCategory.category))
    )
    for campaign_id, category in rows:
        found[campaign_id].append(category)
    return found


async def _views(session: AsyncSession, campaigns: Sequence[Campaign]) -> list[CampaignView]:
    ids = [c.id for c in campaigns]
    categories = await _categories(session, ids)
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
        for campaign_id, n in await session.execute(
            sa.select(col(Suppression.campaign_id), sa.func.count())
            .where(col(Suppression.campaign_id).in_(ids))
            .group_by(col(Suppression.campaign_id))
        ):
            counts[str(campaign_id)]["unsubscribed"] = n
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
        )
        .select_from(
            delivery.join(contact, contact.c.id == delivery.c.contact_id)
            .outerjoin(consent, consent.c.id == delivery.c.consent_event_id)
            .outerjoin(order, order.c.id == delivery.c.order_id)
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
        )
        for row in found
    ]
