"""A campaign's audience: who it may reach now and who not, why a contact is (not) in it, and
its deliveries, made in one INSERT ... SELECT. All from the one eligibility query."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
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
from campaigns.errors import NotFound
from campaigns.models import (
    Campaign,
    CampaignCategory,
    ConsentEvent,
    Contact,
    Delivery,
    OrderCategory,
    ShopOrder,
)
from campaigns.sending.states import DeliveryStatus


async def load_target(session: AsyncSession, campaign_id: str) -> tuple[Campaign, CampaignTarget]:
    """The campaign, and what the engine needs to know of it."""
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("no campaign with this id")
    categories = await campaign_categories(session, [campaign_id])
    target = CampaignTarget(campaign.id, campaign.purpose, tuple(categories[campaign_id]))
    return campaign, target


async def campaign_categories(session: AsyncSession, ids: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    rows = await session.execute(
        sa.select(col(CampaignCategory.campaign_id), col(CampaignCategory.category))
        .where(col(CampaignCategory.campaign_id).in_(ids))
        .order_by(col(CampaignCategory.category))
    )
    for campaign_id, category in rows:
        found[campaign_id].append(category)
    return found


@dataclass(frozen=True)
class AudienceCounts:
    """Who the campaign may reach now, by basis, and who it may not, by reason."""

    eligible: int
    by_basis: dict[str, int]
    excluded: dict[str, int]


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


@dataclass(frozen=True)
class Sample:
    """One contact of a group of the audience, with the sentence that says why it is there."""

    contact_id: str
    email: str
    why: Explanation


async def audience_samples(
    session: AsyncSession, target: CampaignTarget, ctx: Context, per_group: int = 3
) -> dict[str, list[Sample]]:
    """A few contacts per group: eligible ones per basis (keyed by the basis) and excluded ones
    per reason, each with its sentence; one pass of the audience query (a window function)."""
    rules = AudienceRules.for_campaign(target, ctx.config, ctx.clock.now())
    audience = audience_query(rules).subquery("audience")
    numbered = sa.select(
        audience.c.contact_id,
        audience.c.reason,
        audience.c.basis_kind,
        sa.func.row_number()
        .over(
            partition_by=(audience.c.reason, audience.c.basis_kind),
            order_by=audience.c.contact_id,
        )
        .label("n"),
    ).subquery("numbered")
    picked = (
        await session.execute(
            sa.select(numbered.c.contact_id, numbered.c.reason, numbered.c.basis_kind).where(
                numbered.c.n <= per_group
            )
        )
    ).all()
    samples: dict[str, list[Sample]] = defaultdict(list)
    for contact_id, reason, basis_kind in sorted(picked, key=lambda row: row[0]):
        why = await explain_target(session, contact_id, target, ctx)
        contact = await session.get(Contact, contact_id)
        assert contact is not None
        group = basis_kind if reason == ELIGIBLE else reason
        samples[group].append(Sample(contact_id, contact.email, why))
    return dict(samples)


async def explain(
    session: AsyncSession, contact_id: str, campaign_id: str, ctx: Context
) -> Explanation:
    """Why this contact may (or may not) receive this campaign, with the evidence."""
    _, target = await load_target(session, campaign_id)
    return await explain_target(session, contact_id, target, ctx)


async def explain_target(
    session: AsyncSession, contact_id: str, target: CampaignTarget, ctx: Context
) -> Explanation:
    """Why this contact may (or may not) receive a campaign with this purpose and these
    categories (a saved campaign or the draft in the console's editor)."""
    campaign_id = target.id
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
    "soft_opt_in_ended": "the customer ended mail about what they bought (preference page),"
    " and there is no consent for this purpose",
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
        sa.case((capped, DeliveryStatus.SKIPPED), else_=DeliveryStatus.QUEUED),
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
    # (lifecycle.start_run); if they did, the unique key would fail one, never duplicate.
    result = await session.execute(delivery.insert().from_select(columns, rows))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
