"""The legal-basis engine: which bases a contact holds, as SQL predicates (C1-C10).

Each basis is one query over the evidence tables, so the same predicates can later be composed
into a campaign's audience query; nothing here loops over contacts in Python to decide a basis.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from campaigns.clock import Clock, add_months, months_before
from campaigns.config import MarketingPolicy
from campaigns.models import ConsentEvent, Contact, OrderCategory, ShopOrder
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
