"""The legal-basis engine: which bases a contact holds, as SQL predicates (C1-C10).

Each basis is one query over the evidence tables, so the same predicates can later be composed
into a campaign's audience query; nothing here loops over contacts in Python to decide a basis.
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
from campaigns.models import (
    ConsentEvent,
    Contact,
    ContactHash,
    Delivery,
    OrderCategory,
    ShopOrder,
    Suppression,
)
from campaigns.suppression import AddressHasher, suppressed_among


@dataclass(frozen=True)
class Basis:
    kind: str  # "consent" | "soft_opt_in"
    purpose: str | None = None
    since: datetime | None = None
    categories: tuple[str, ...] | None = None
    until: datetime | None = None
    consent_event_id: str | None = None
    order_id: str | None = None


def latest_consent_events() -> sa.Subquery:
    """Per contact and purpose, the latest valid event (C2-C4): it decides the purpose (C31)."""
    rank = (
        sa.func.row_number()
        .over(
            partition_by=(col(ConsentEvent.contact_id), col(ConsentEvent.purpose)),
            order_by=(col(ConsentEvent.captured_at).desc(), col(ConsentEvent.id).desc()),
        )
        .label("rank")
    )
    ranked = (
        sa.select(
            col(ConsentEvent.id),
            col(ConsentEvent.contact_id),
            col(ConsentEvent.purpose),
            col(ConsentEvent.granted),
            col(ConsentEvent.captured_at),
            rank,
        )
        .where(col(ConsentEvent.valid).is_(True))
        .subquery("ranked_consent")
    )
    return (
        sa.select(ranked)
        .where(ranked.c.rank == 1, ranked.c.granted.is_(True))
        .subquery("consent_basis")
    )


def opted_out_at_collection() -> sa.Exists:
    """C7: the customer used the opt-out when this address was collected in some order."""
    other = sa.orm.aliased(ShopOrder)
    return (
        sa.select(sa.literal(1))
        .where(col(other.email) == col(Contact.email), col(other.opt_out_used).is_(True))
        .exists()
    )


def qualifying_order_clause(now: datetime, policy: MarketingPolicy) -> sa.ColumnElement[bool]:
    """C6 + C10: a completed order with the shop, the address given in it, the opt-out offered
    and not used, placed within the soft-opt-in window."""
    return sa.and_(
        col(ShopOrder.status) == "completed",
        col(ShopOrder.opt_out_offered).is_(True),
        col(ShopOrder.opt_out_used).is_(False),
        col(ShopOrder.email) == col(Contact.email),
        col(ShopOrder.placed_at) > months_before(now, policy.soft_opt_in_months),
        col(ShopOrder.placed_at) <= now,
        ~opted_out_at_collection(),
    )


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

    consent = latest_consent_events()
    consent_rows = await session.execute(
        sa.select(consent.c.contact_id, consent.c.purpose, consent.c.captured_at, consent.c.id)
        .where(consent.c.contact_id.in_(allowed))
        .order_by(consent.c.contact_id, consent.c.purpose)
    )
    for contact_id, purpose, since, event_id in consent_rows:
        bases[contact_id].append(
            Basis("consent", purpose=purpose, since=since, consent_event_id=str(event_id))
        )

    order_rows = await session.execute(
        sa.select(
            col(ShopOrder.contact_id),
            col(OrderCategory.category),
            col(ShopOrder.id),
            col(ShopOrder.placed_at),
        )
        .join(OrderCategory, col(OrderCategory.order_id) == col(ShopOrder.id))
        .join(Contact, col(Contact.id) == col(ShopOrder.contact_id))
        .where(col(ShopOrder.contact_id).in_(allowed), qualifying_order_clause(now, policy))
        .order_by(col(ShopOrder.placed_at), col(ShopOrder.id))
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


def _only(column: Any, contact_ids: Sequence[str] | None) -> list[Any]:
    return [] if contact_ids is None else [column.in_(contact_ids)]


def consent_for_purpose(purpose: str, contact_ids: Sequence[str] | None = None) -> sa.Subquery:
    """Basis 1, explicit consent (C2-C4, C31): the latest valid event for the purpose is a
    grant. Columns: contact_id, consent_event_id, captured_at."""
    ranked = (
        sa.select(
            col(ConsentEvent.contact_id),
            col(ConsentEvent.id).label("consent_event_id"),
            col(ConsentEvent.granted),
            col(ConsentEvent.captured_at),
            sa.func.row_number()
            .over(
                partition_by=col(ConsentEvent.contact_id),
                order_by=(col(ConsentEvent.captured_at).desc(), col(ConsentEvent.id).desc()),
            )
            .label("rank"),
        )
        .where(
            col(ConsentEvent.purpose) == purpose,
            col(ConsentEvent.valid).is_(True),
            *_only(col(ConsentEvent.contact_id), contact_ids),
        )
        .subquery("consent_ranked")
    )
    return (
        sa.select(ranked.c.contact_id, ranked.c.consent_event_id, ranked.c.captured_at)
        .where(ranked.c.rank == 1, ranked.c.granted.is_(True))
        .subquery("consent")
    )


def _qualifying_order(order: Any, owner: Any, now: datetime) -> list[sa.ColumnElement[bool]]:
    """C6: a completed order with the shop, the address given in it, opt-out offered and not
    used. (The window, C10, is applied by the callers, so that `lapsed` can be told apart.)"""
    return [
        order.status == "completed",
        order.opt_out_offered.is_(True),
        order.opt_out_used.is_(False),
        order.email == owner.email,
        order.placed_at <= now,
    ]


def order_coverage(rules: AudienceRules, contact_ids: Sequence[str] | None = None) -> sa.Subquery:
    """Basis 2, soft opt-in: per contact and address given in its orders, the last qualifying
    order (`last_order_at`) and, per campaign category i, the last qualifying order with a
    similar category (`covers_i`, C8). The caller joins on the contact's current address, so
    only orders placed with that address count (C6). No join to contact in here: grouping
    the orders alone keeps the planner's estimates right on large tables."""
    order, item = ShopOrder.__table__, OrderCategory.__table__  # type: ignore[attr-defined]
    covers = [
        sa.func.max(sa.case((item.c.category.in_(sorted(similar)), order.c.placed_at))).label(
            f"covers_{i}"
        )
        for i, similar in enumerate(rules.similar)
    ]
    return (
        sa.select(
            order.c.contact_id,
            order.c.email,
            sa.func.max(order.c.placed_at).label("last_order_at"),
            *covers,
        )
        .select_from(order.join(item, item.c.order_id == order.c.id))
        .where(
            order.c.status == "completed",
            order.c.opt_out_offered.is_(True),
            order.c.opt_out_used.is_(False),
            order.c.placed_at <= rules.now,
            *_only(order.c.contact_id, contact_ids),
        )
        .group_by(order.c.contact_id, order.c.email)
        .subquery("coverage")
    )


def opted_out_addresses() -> sa.Subquery:
    """C7: addresses for which the customer used the opt-out at collection, in any order."""
    return (
        sa.select(col(ShopOrder.email))
        .where(col(ShopOrder.opt_out_used).is_(True))
        .distinct()
        .subquery("opted_out")
    )


def suppressed_contacts(contact_ids: Sequence[str] | None = None) -> sa.Subquery:
    """C13, C16, C21-C22: contacts whose address has an active suppression entry, under any
    configured secret."""
    hashes, entries = ContactHash.__table__, Suppression.__table__  # type: ignore[attr-defined]
    return (
        sa.select(hashes.c.contact_id)
        .select_from(hashes.join(entries, entries.c.address_hash == hashes.c.address_hash))
        .where(entries.c.lifted_at.is_(None), *_only(hashes.c.contact_id, contact_ids))
        .distinct()
        .subquery("suppressed")
    )


def recent_sends(rules: AudienceRules, contact_ids: Sequence[str] | None = None) -> sa.Subquery:
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


def audience_query(
    rules: AudienceRules, contact_ids: Sequence[str] | None = None
) -> sa.Select[Any]:
    """Every contact (or those given) with `reason` (`eligible` or an exclusion reason),
    `basis_kind`, `consent_event_id` and `consent_at`."""
    contact = Contact.__table__  # type: ignore[attr-defined]
    consent = consent_for_purpose(rules.consent_purpose, contact_ids)
    coverage = order_coverage(rules, contact_ids)
    opted_out = opted_out_addresses()
    suppressed = suppressed_contacts(contact_ids)
    recent = recent_sends(rules, contact_ids)

    has_consent = consent.c.consent_event_id.is_not(None)
    if rules.similar:
        covered_in_window = sa.and_(
            *(coverage.c[f"covers_{i}"] > rules.window_start for i in range(len(rules.similar)))
        )
        covered_ever = sa.and_(
            *(coverage.c[f"covers_{i}"].is_not(None) for i in range(len(rules.similar)))
        )
    else:  # a campaign about no product category is not "about similar products"
        covered_in_window = covered_ever = sa.false()
    soft_opt_in = sa.and_(
        sa.true() if rules.soft_opt_in_allowed else sa.false(),
        opted_out.c.email.is_(None),
        covered_in_window,
    )
    has_basis = sa.or_(has_consent, soft_opt_in)
    reason = sa.case(
        (suppressed.c.contact_id.is_not(None), "suppressed"),
        (
            sa.and_(has_basis, sa.func.coalesce(recent.c.sends, 0) >= rules.cap_max),
            "frequency_cap",
        ),
        (has_basis, ELIGIBLE),
        (opted_out.c.email.is_not(None), "opted_out_at_collection"),
        (coverage.c.last_order_at.is_(None), "no_basis"),
        (sa.false() if rules.soft_opt_in_allowed else sa.true(), "third_party_purpose"),
        (covered_ever, "lapsed"),
        else_="category_mismatch",
    ).label("reason")
    # An objection ends all marketing processing (C16): a suppressed contact shows no basis.
    basis_kind = sa.case(
        (suppressed.c.contact_id.is_not(None), sa.null()),
        (has_consent, "consent"),
        (soft_opt_in, "soft_opt_in"),
        else_=sa.null(),
    ).label("basis_kind")
    return (
        sa.select(
            contact.c.id.label("contact_id"),
            reason,
            basis_kind,
            consent.c.consent_event_id,
            consent.c.captured_at.label("consent_at"),
        )
        .select_from(
            contact.outerjoin(consent, consent.c.contact_id == contact.c.id)
            .outerjoin(
                coverage,
                sa.and_(coverage.c.contact_id == contact.c.id, coverage.c.email == contact.c.email),
            )
            .outerjoin(opted_out, opted_out.c.email == contact.c.email)
            .outerjoin(suppressed, suppressed.c.contact_id == contact.c.id)
            .outerjoin(recent, recent.c.contact_id == contact.c.id)
        )
        .where(*_only(contact.c.id, contact_ids))
    )


def soft_opt_in_order(rules: AudienceRules, contact_id: Any) -> Any:
    """The evidence for a soft-opt-in basis: the latest qualifying order in the window with a
    category similar to one of the campaign's."""
    order = ShopOrder.__table__.alias("evidence_order")  # type: ignore[attr-defined]
    item = OrderCategory.__table__.alias("evidence_category")  # type: ignore[attr-defined]
    owner = Contact.__table__.alias("evidence_owner")  # type: ignore[attr-defined]
    categories = sorted(set().union(*rules.similar)) if rules.similar else []
    return (
        sa.select(order.c.id)
        .select_from(
            order.join(item, item.c.order_id == order.c.id).join(
                owner, owner.c.id == order.c.contact_id
            )
        )
        .where(
            order.c.contact_id == contact_id,
            *_qualifying_order(order.c, owner.c, rules.now),
            order.c.placed_at > rules.window_start,
            item.c.category.in_(categories),
        )
        .order_by(order.c.placed_at.desc(), order.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
