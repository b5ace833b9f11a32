"""The legal-basis engine: which bases a contact holds, as SQL predicates (C1-C10).

Each basis is one predicate over the projections of the evidence (projections.py: the current
consent per purpose, what the orders cover, and the per-contact marketing profile made of
them), composed into a campaign's audience query; nothing here loops over contacts in Python to
decide a basis.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from campaigns.clock import Clock, add_months, months_before
from campaigns.config import BusinessConfig, MarketingPolicy
from campaigns.db import as_epoch_us, greatest
from campaigns.models import (
    Contact,
    CurrentConsent,
    Delivery,
    MarketingProfile,
    PurchaseCoverage,
    PurchaseStanding,
)
from campaigns.suppression.entries import AddressHasher, suppressed_among


@dataclass(frozen=True)
class Basis:
    kind: str  # "consent" | "soft_opt_in"
    purpose: str | None = None
    since: datetime | None = None
    categories: tuple[str, ...] | None = None
    until: datetime | None = None
    consent_event_id: str | None = None
    order_id: str | None = None


async def current_bases(
    session: AsyncSession,
    contact_ids: Sequence[str],
    *,
    clock: Clock,
    policy: MarketingPolicy,
    hasher: AddressHasher,
) -> dict[str, list[Basis]]:
    """The bases each contact holds now. A suppressed address holds none (C22)."""
    now = clock.now()
    bases: dict[str, list[Basis]] = {contact_id: [] for contact_id in contact_ids}
    if not contact_ids:
        return bases
    emails = dict(
        (
            await session.execute(
                sa.select(col(Contact.id), col(Contact.email)).where(
                    col(Contact.id).in_(contact_ids)
                )
            )
        ).all()
    )
    suppressed = await suppressed_among(session, emails.values(), hasher)
    allowed = [cid for cid, email in emails.items() if email not in suppressed]
    if not allowed:
        return bases

    consent = CurrentConsent.__table__  # type: ignore[attr-defined]
    consent_rows = await session.execute(
        sa.select(
            consent.c.contact_id,
            consent.c.purpose,
            consent.c.captured_at,
            consent.c.consent_event_id,
        )
        .where(consent.c.contact_id.in_(allowed), consent.c.granted.is_(True))
        .order_by(consent.c.contact_id, consent.c.purpose)
    )
    for contact_id, purpose, since, event_id in consent_rows:
        bases[contact_id].append(
            Basis("consent", purpose=purpose, since=since, consent_event_id=str(event_id))
        )

    # The same projections as the audience query: per category the latest qualifying order
    # with the contact's current address (C6), in the window (C10), unless the opt-out was
    # used for that address (C7).
    coverage = PurchaseCoverage.__table__  # type: ignore[attr-defined]
    standing = PurchaseStanding.__table__  # type: ignore[attr-defined]
    order_rows = await session.execute(
        sa.select(
            coverage.c.contact_id, coverage.c.category, coverage.c.order_id, coverage.c.placed_at
        )
        .select_from(coverage.outerjoin(standing, standing.c.contact_id == coverage.c.contact_id))
        .where(
            coverage.c.contact_id.in_(allowed),
            standing.c.opted_out_order_id.is_(None),
            coverage.c.placed_at > months_before(now, policy.soft_opt_in_months),
            coverage.c.placed_at <= now,
        )
        .order_by(coverage.c.placed_at, coverage.c.order_id)
    )
    # Each category is covered by its latest qualifying order; group categories by that order.
    latest: dict[tuple[str, str], tuple[str, datetime]] = {}
    for contact_id, category, order_id, placed_at in order_rows:
        latest[(contact_id, category)] = (order_id, placed_at)
    grouped: dict[tuple[str, str, datetime], list[str]] = defaultdict(list)
    for (contact_id, category), (order_id, placed_at) in latest.items():
        grouped[(contact_id, order_id, placed_at)].append(category)
    for (contact_id, order_id, placed_at), categories in sorted(
        grouped.items(), key=lambda item: (item[0][0], item[0][2])
    ):
        bases[contact_id].append(
            Basis(
                "soft_opt_in",
                categories=tuple(sorted(categories)),
                since=placed_at,
                until=add_months(placed_at, policy.soft_opt_in_months),
                order_id=order_id,
            )
        )
    return bases


# ---- campaign audiences -------------------------------------------------------------------
#
# One query decides, for every contact, whether a campaign may reach it and on which basis, or
# why not. Counting an audience, explaining one contact ("why") and materialising deliveries
# all select from `audience_query`, so there is no second implementation to drift.

ELIGIBLE = "eligible"
EXCLUSION_REASONS = (
    "suppressed",
    "no_basis",
    "third_party_purpose",
    "opted_out_at_collection",
    "lapsed",
    "category_mismatch",
    "frequency_cap",
)
# Deliveries that count against the frequency cap (C12): handed to SMTP, or possibly so.
CAPPED_STATUSES = ("sending", "sent", "unknown")


@dataclass(frozen=True)
class CampaignTarget:
    """What the engine needs to know of a campaign."""

    id: str
    purpose: str
    categories: tuple[str, ...]


@dataclass(frozen=True)
class AudienceRules:
    """The policy, resolved for one campaign at one moment."""

    now: datetime
    consent_purpose: str
    soft_opt_in_allowed: bool  # False for third-party purposes (C9)
    similar: tuple[frozenset[str], ...]  # per campaign category, the categories that cover it
    window_start: datetime  # C10
    cap_max: int
    cap_since: datetime  # C12

    @classmethod
    def for_campaign(
        cls, campaign: CampaignTarget, config: BusinessConfig, now: datetime
    ) -> AudienceRules:
        marketing = config.marketing
        return cls(
            now=now,
            consent_purpose=campaign.purpose,
            soft_opt_in_allowed=campaign.purpose not in marketing.third_party_purposes,
            similar=tuple(config.categories.similar_to(c) for c in campaign.categories),
            window_start=months_before(now, marketing.soft_opt_in_months),
            cap_max=marketing.frequency_cap.max,
            cap_since=now - timedelta(days=marketing.frequency_cap.days),
        )


# The contacts a query is about: all (None), a list, or a SELECT of their ids (the claim's way:
# one array parameter instead of a batch of ids in every subquery).
ContactIds = Sequence[str] | sa.Select[Any] | None


def _only(column: Any, contact_ids: ContactIds) -> list[Any]:
    return [] if contact_ids is None else [column.in_(contact_ids)]


def consent_for_purpose(purpose: str, contact_ids: ContactIds = None) -> sa.Subquery:
    """Basis 1, explicit consent (C2-C4, C31): the contact's current consent for the purpose
    (its latest valid event, kept in `current_consent`) is a grant. Columns: contact_id,
    consent_event_id, captured_at."""
    current = CurrentConsent.__table__  # type: ignore[attr-defined]
    return (
        sa.select(current.c.contact_id, current.c.consent_event_id, current.c.captured_at)
        .where(
            current.c.purpose == purpose,
            current.c.granted.is_(True),
            *_only(current.c.contact_id, contact_ids),
        )
        .subquery("consent")
    )


def recent_sends(rules: AudienceRules, contact_ids: ContactIds = None) -> sa.Subquery:
    """C12: marketing mails per contact in the rolling frequency-cap window."""
    delivery = Delivery.__table__  # type: ignore[attr-defined]
    return (
        sa.select(delivery.c.contact_id, sa.func.count().label("sends"))
        .where(
            # In-flight and unknown mail has no sent_at yet: its claim time counts.
            sa.func.coalesce(delivery.c.sent_at, delivery.c.claimed_at) > rules.cap_since,
            delivery.c.status.in_(CAPPED_STATUSES),
            *_only(delivery.c.contact_id, contact_ids),
        )
        .group_by(delivery.c.contact_id)
        .subquery("recent")
    )


_NEVER = -(2**62)  # microseconds: stands in for NULL where a greatest is taken


def _latest(values: Sequence[Any]) -> Any:
    """The greatest of these nullable numbers, NULL if all are NULL."""
    if len(values) == 1:
        return values[0]
    never = sa.literal(_NEVER, sa.BigInteger)
    return sa.func.nullif(
        greatest(*(sa.func.coalesce(v, never) for v in values), type_=sa.BigInteger()), never
    )


def audience_query(rules: AudienceRules, contact_ids: ContactIds = None) -> sa.Select[Any]:
    """Every contact (or those given) with `reason` (`eligible` or an exclusion reason),
    `basis_kind`, and the evidence: `consent_event_id` (the current consent for the purpose)
    and `order_id` (the latest qualifying order in the window with a category similar to one of
    the campaign's, the soft-opt-in evidence).

    One pass over the marketing profiles (one row per contact, projections.py), joined only to
    the recent sends: the consent for the purpose and the coverage per category are read from
    the profile's JSON objects by key."""
    profile = MarketingProfile.__table__  # type: ignore[attr-defined]
    recent = recent_sends(rules, contact_ids)
    now_us = as_epoch_us(rules.now)
    window_start_us = as_epoch_us(rules.window_start)  # C10

    def covered_at(category: str) -> Any:
        """C6: when the latest qualifying order with this category was placed, if by now.
        (A latest order stamped a few minutes ahead of our clock hides an older one until
        then: the contact is left out meanwhile, never let in wrongly.)"""
        at = sa.cast(profile.c.covered_at[category].as_string(), sa.BigInteger)
        return sa.case((at <= now_us, at))

    consent_event_id = sa.cast(profile.c.consents[rules.consent_purpose].as_string(), sa.BigInteger)
    has_consent = consent_event_id.is_not(None)  # C2-C4, C31
    # Soft opt-in never covers a third-party purpose (C9): no need to look at categories.
    similar = rules.similar if rules.soft_opt_in_allowed else ()
    bought = {c: covered_at(c) for c in sorted(set().union(*similar))}
    if similar:
        # C8: campaign category i is covered by the latest order with a similar category.
        covers = [_latest([bought[c] for c in sorted(s)]) for s in similar]
        covered_in_window = sa.and_(*(at > window_start_us for at in covers))  # C10
        covered_ever = sa.and_(*(at.is_not(None) for at in covers))
        # The evidence: the latest order in the window with any similar category; among
        # orders placed at the same moment, the greatest id.
        in_window = {c: sa.case((at > window_start_us, at)) for c, at in bought.items()}
        evidence_at = _latest(list(in_window.values()))
        ids = [
            sa.case((at == evidence_at, profile.c.covered_by[c].as_string()))
            for c, at in in_window.items()
        ]
        order_id: Any = (
            ids[0]
            if len(ids) == 1
            else sa.func.nullif(greatest(*(sa.func.coalesce(i, "") for i in ids)), "")
        )
    else:  # a campaign about no product category is not "about similar products"
        covered_in_window = covered_ever = sa.false()
        order_id = sa.null()
    opted_out = profile.c.opted_out_order_id.is_not(None)  # C7
    soft_opt_in = sa.and_(~opted_out, covered_in_window)
    has_basis = sa.or_(has_consent, soft_opt_in)
    no_order = sa.or_(profile.c.first_order_at.is_(None), profile.c.first_order_at > rules.now)
    suppressed = profile.c.suppressed.is_(True)
    reason = sa.case(
        (suppressed, "suppressed"),
        (
            sa.and_(has_basis, sa.func.coalesce(recent.c.sends, 0) >= rules.cap_max),
            "frequency_cap",
        ),
        (has_basis, ELIGIBLE),
        (opted_out, "opted_out_at_collection"),
        (no_order, "no_basis"),
        (sa.false() if rules.soft_opt_in_allowed else sa.true(), "third_party_purpose"),
        (covered_ever, "lapsed"),
        else_="category_mismatch",
    ).label("reason")
    # An objection ends all marketing processing (C16): a suppressed contact shows no basis.
    basis_kind = sa.case(
        (suppressed, sa.null()),
        (has_consent, "consent"),
        (soft_opt_in, "soft_opt_in"),
        else_=sa.null(),
    ).label("basis_kind")
    return (
        sa.select(
            profile.c.contact_id,
            reason,
            basis_kind,
            consent_event_id.label("consent_event_id"),
            order_id.label("order_id"),
        )
        .select_from(profile.outerjoin(recent, recent.c.contact_id == profile.c.contact_id))
        .where(*_only(profile.c.contact_id, contact_ids))
    )
