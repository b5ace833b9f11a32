"""The legal-basis engine: which bases a contact holds, as SQL predicates (C1-C10).

Each basis is one predicate over the projections of the evidence (projections.py: the current
consent per purpose, what the orders cover, and the per-contact marketing profile made of
them), composed into a campaign's audience query and listed per contact by `current_bases`;
nothing here loops over contacts in Python to decide a basis.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.clock import Clock, add_months, months_before
from campaigns.config import BusinessConfig, MarketingPolicy
from campaigns.db import as_epoch_us, from_epoch_us, greatest
from campaigns.models import ConsentEvent, Delivery, MarketingProfile
from campaigns.sending.states import DeliveryStatus

# ---- the bases, one definition each ------------------------------------------------------
#
# Each basis, and what stands against one, is an expression over a contact's marketing profile
# (projections.py: one row per contact, derived from the evidence). The audience query composes
# them for a campaign (counts, "why", materialising, the dispatcher's claim); `current_bases`
# lists what they give a contact (the contact detail API); the preference page asks the consent
# one. None of them reads the evidence a second way.

PROFILE = MarketingProfile.__table__  # type: ignore[attr-defined]
CONSENT = ConsentEvent.__table__  # type: ignore[attr-defined]

# The contacts a query is about: all (None), a list, or a SELECT of their ids (the claim's way:
# one array parameter instead of a batch of ids in every subquery).
ContactIds = Sequence[str] | sa.Select[Any] | None


def _only(column: Any, contact_ids: ContactIds) -> list[Any]:
    return [] if contact_ids is None else [column.in_(contact_ids)]


# An objection ends every basis (C16, C21-C22).
SUPPRESSED = PROFILE.c.suppressed.is_(True)
# The opt-out offered at collection was used for the contact's address: no soft opt-in (C7).
OPTED_OUT = PROFILE.c.opted_out_order_id.is_not(None)
# The person ended the customer exception from a preference page (C38): no soft opt-in either.
ENDED = PROFILE.c.soft_opt_in_ended_at.is_not(None)


def consent_event(purpose: str) -> Any:
    """Basis 1, explicit consent (C2-C4, C31): the id of the consent event of the contact's
    current grant for the purpose (its latest valid event, if a grant), NULL without one."""
    return sa.cast(PROFILE.c.consents[purpose].as_string(), sa.BigInteger)


def covering_order(category: str) -> Any:
    """The id of the latest qualifying order with this category (C6)."""
    return PROFILE.c.covered_by[category].as_string()


def soft_opt_in_window_start(now: datetime, policy: MarketingPolicy) -> datetime:
    """C10: an order placed after this still gives a soft-opt-in basis."""
    return months_before(now, policy.soft_opt_in_months)


@dataclass(frozen=True)
class PurchaseWindow:
    """Basis 2, the customer exception (soft opt-in), per category bought, at one moment."""

    now: datetime
    start: datetime  # C10

    def placed(self, category: str) -> Any:
        """C6: when the latest qualifying order with this category was placed (microseconds
        since the epoch), if by now. (A latest order stamped a few minutes ahead of our clock
        hides an older one until then: the contact is left out meanwhile, never let in
        wrongly.)"""
        at = sa.cast(PROFILE.c.covered_at[category].as_string(), sa.BigInteger)
        return sa.case((at <= as_epoch_us(self.now), at))

    def holds(self, placed: Any) -> Any:
        """C10: an order placed then is recent enough."""
        return placed > as_epoch_us(self.start)

    def covers(self, category: str, contact_ids: ContactIds = None) -> sa.Select[Any]:
        """The contacts this category gives a soft-opt-in basis (C6, C7, C10), whatever a
        campaign is about: contact_id, category, order_id, placed (microseconds)."""
        placed = self.placed(category)
        return sa.select(
            PROFILE.c.contact_id,
            sa.literal(category, sa.String).label("category"),
            covering_order(category).label("order_id"),
            placed.label("placed"),
        ).where(~OPTED_OUT, ~ENDED, self.holds(placed), *_only(PROFILE.c.contact_id, contact_ids))


def consent_for_purpose(purpose: str, contact_ids: ContactIds = None) -> sa.Subquery:
    """The contacts with consent for the purpose (`consent_event`): contact_id,
    consent_event_id, captured_at (of that event)."""
    event_id = consent_event(purpose)
    return (
        sa.select(
            PROFILE.c.contact_id, CONSENT.c.id.label("consent_event_id"), CONSENT.c.captured_at
        )
        .select_from(
            PROFILE.join(
                CONSENT,
                sa.and_(CONSENT.c.id == event_id, CONSENT.c.contact_id == PROFILE.c.contact_id),
            )
        )
        .where(*_only(PROFILE.c.contact_id, contact_ids))
        .subquery("consent")
    )


def _granted(purpose: str, contact_ids: ContactIds) -> sa.Select[Any]:
    """`consent_for_purpose`, naming the purpose: contact_id, purpose, captured_at,
    consent_event_id."""
    consent = consent_for_purpose(purpose, contact_ids)
    return sa.select(
        consent.c.contact_id,
        sa.literal(purpose, sa.String).label("purpose"),
        consent.c.captured_at,
        consent.c.consent_event_id,
    )


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
) -> dict[str, list[Basis]]:
    """The bases each contact holds now, read with the expressions the audience query is made
    of: per purpose, consent; per order, the categories it gives a soft-opt-in basis (the
    latest qualifying order of each, in the window). A suppressed address holds none (C22):
    the profile's flag, the suppression predicate stored per contact, as the audience reads it."""
    now = clock.now()
    bases: dict[str, list[Basis]] = {contact_id: [] for contact_id in contact_ids}
    if not contact_ids:
        return bases

    # The purposes and categories to ask about: those the profiles name. Whether they give a
    # basis is for the expressions to say.
    profiles = (
        await session.execute(
            sa.select(PROFILE.c.contact_id, PROFILE.c.consents, PROFILE.c.covered_at).where(
                PROFILE.c.contact_id.in_(contact_ids), ~SUPPRESSED
            )
        )
    ).all()
    held = [contact_id for contact_id, _, _ in profiles]
    purposes = sorted({p for _, consents, _ in profiles for p in consents or {}})
    categories = sorted({c for _, _, covered in profiles for c in covered or {}})

    if purposes:
        granted = sa.union_all(*(_granted(p, held) for p in purposes))
        for contact_id, purpose, since, event_id in sorted(
            map(tuple, await session.execute(granted))
        ):
            bases[contact_id].append(
                Basis("consent", purpose=purpose, since=since, consent_event_id=str(event_id))
            )

    # Each category is covered by its latest qualifying order; group categories by that order.
    grouped: dict[tuple[str, int, str], list[str]] = defaultdict(list)
    if categories:
        window = PurchaseWindow(now, soft_opt_in_window_start(now, policy))
        covered = sa.union_all(*(window.covers(c, held) for c in categories))
        for contact_id, category, order_id, placed in await session.execute(covered):
            grouped[(contact_id, placed, order_id)].append(category)
    for (contact_id, placed, order_id), bought in sorted(grouped.items()):
        since = from_epoch_us(placed)
        bases[contact_id].append(
            Basis(
                "soft_opt_in",
                categories=tuple(sorted(bought)),
                since=since,
                until=add_months(since, policy.soft_opt_in_months),
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
    "soft_opt_in_ended",
    "lapsed",
    "category_mismatch",
    "frequency_cap",
)
# Deliveries that count against the frequency cap (C12): handed to SMTP, or possibly so.
CAPPED_STATUSES = (DeliveryStatus.SENDING, DeliveryStatus.SENT, DeliveryStatus.UNKNOWN)


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
            window_start=soft_opt_in_window_start(now, marketing),
            cap_max=marketing.frequency_cap.max,
            cap_since=now - timedelta(days=marketing.frequency_cap.days),
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
    profile = PROFILE
    recent = recent_sends(rules, contact_ids)
    window = PurchaseWindow(rules.now, rules.window_start)

    consent_event_id = consent_event(rules.consent_purpose)
    has_consent = consent_event_id.is_not(None)  # C2-C4, C31
    # Soft opt-in never covers a third-party purpose (C9): no need to look at categories.
    similar = rules.similar if rules.soft_opt_in_allowed else ()
    bought = {c: window.placed(c) for c in sorted(set().union(*similar))}
    if similar:
        # C8: campaign category i is covered by the latest order with a similar category.
        covers = [_latest([bought[c] for c in sorted(s)]) for s in similar]
        covered_in_window = sa.and_(*(window.holds(at) for at in covers))  # C10
        covered_ever = sa.and_(*(at.is_not(None) for at in covers))
        # The evidence: the latest order in the window with any similar category; among
        # orders placed at the same moment, the greatest id.
        in_window = {c: sa.case((window.holds(at), at)) for c, at in bought.items()}
        evidence_at = _latest(list(in_window.values()))
        ids = [sa.case((at == evidence_at, covering_order(c))) for c, at in in_window.items()]
        order_id: Any = (
            ids[0]
            if len(ids) == 1
            else sa.func.nullif(greatest(*(sa.func.coalesce(i, "") for i in ids)), "")
        )
    else:  # a campaign about no product category is not "about similar products"
        covered_in_window = covered_ever = sa.false()
        order_id = sa.null()
    opted_out = OPTED_OUT  # C7
    soft_opt_in = sa.and_(~opted_out, ~ENDED, covered_in_window)
    has_basis = sa.or_(has_consent, soft_opt_in)
    no_order = sa.or_(profile.c.first_order_at.is_(None), profile.c.first_order_at > rules.now)
    suppressed = SUPPRESSED
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
        (ENDED, "soft_opt_in_ended"),
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
