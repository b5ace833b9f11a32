"""Property: for random contact histories, the SQL engine agrees with a plain-Python reading of
the rules; a contact is in the audience exactly when `why` gives it a basis and it is not
capped; a suppressed contact is never in it (C1-C12, C16, C21, C31).

And over the same evidence, the bases a contact is shown to hold (`current_bases`: the contact
detail API) are the ones the audience query sends on, for several campaigns: consent for the
campaign's purpose (C1-C4, C31), soft opt-in covering every campaign category (C6-C8, C10),
never for a third-party purpose (C9), none once suppressed (C16, C22); the frequency cap (C12)
skips a contact without taking its basis away."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from campaigns.audience.audience import explain, load_target, materialise
from campaigns.audience.eligibility import (
    AudienceRules,
    Basis,
    CampaignTarget,
    audience_query,
    current_bases,
)
from campaigns.clock import FixedClock, months_before
from campaigns.evidence.contacts import ingest_contacts
from campaigns.evidence.inputs import ContactIn
from campaigns.models import Campaign, Delivery
from campaigns.sending.campaigns import create_campaign
from campaigns.sending.inputs import CampaignIn
from campaigns.suppression.entries import suppress
from mailer.services import Services
from mailer.settings import Settings
from tests import factories
from tests.conftest import NOW, ROOT, empty_tables, run_in_thread

pytestmark = pytest.mark.integration

PURPOSES = ["newsletter", "promotions", "partner_offers"]
CATEGORIES = ["tea", "herbal-tea", "baby-food"]


@dataclass(frozen=True)
class Event:
    purpose: str
    granted: bool
    prechecked: bool
    days_ago: int


@dataclass(frozen=True)
class Order:
    categories: frozenset[str]
    days_ago: int
    completed: bool
    offered: bool
    used: bool


@dataclass(frozen=True)
class History:
    events: tuple[Event, ...]
    orders: tuple[Order, ...]
    suppressed: bool
    recent_sends: int


events = st.lists(
    st.builds(Event, st.sampled_from(PURPOSES), st.booleans(), st.booleans(), st.integers(0, 900)),
    max_size=4,
    unique_by=lambda e: e.days_ago,
).map(tuple)
orders = st.lists(
    st.builds(
        Order,
        st.frozensets(st.sampled_from(CATEGORIES), min_size=1),
        st.one_of(st.integers(0, 1000), st.integers(700, 760)),  # around the C10 edge too
        st.sampled_from([True, True, True, False]),  # completed: more often, so that soft
        st.sampled_from([True, True, True, False]),  # opt-in bases are common enough to check
        st.sampled_from([False, False, False, True]),
    ),  # opt-out used: rarer
    max_size=3,
).map(tuple)
histories = st.builds(
    History, events, orders, st.sampled_from([False, False, False, True]), st.integers(0, 3)
)
campaigns = st.tuples(
    st.sampled_from(PURPOSES), st.lists(st.sampled_from(CATEGORIES), max_size=2, unique=True)
)
# The campaigns whose audiences are held against `current_bases`: every purpose, the
# third-party one among them (C9), with no category, each category, and pairs of similar (C8)
# and unrelated ones. One query each: cheap next to building the evidence.
CHECKED_CAMPAIGNS = [
    (purpose, list(categories))
    for purpose in PURPOSES
    for size in range(3)
    for categories in itertools.combinations(CATEGORIES, size)
]


def expected_reason(h: History, purpose: str, categories: list[str], config: Any) -> str:
    """The rules, read plainly (RULES.md), without SQL."""
    if h.suppressed:
        return "suppressed"
    relevant = [e for e in h.events if e.purpose == purpose and (not e.granted or not e.prechecked)]
    latest = min(relevant, key=lambda e: e.days_ago, default=None)
    has_consent = latest is not None and latest.granted
    qualifying = [o for o in h.orders if o.completed and o.offered and not o.used]
    opted_out = any(o.used for o in h.orders)
    window_start = months_before(NOW, config.marketing.soft_opt_in_months)

    def covered(category: str, in_window: bool) -> bool:
        similar = config.categories.similar_to(category)
        return any(
            o.categories & similar
            and (not in_window or NOW - timedelta(days=o.days_ago) > window_start)
            for o in qualifying
        )

    third_party = purpose in config.marketing.third_party_purposes
    soft = (
        not third_party
        and not opted_out
        and bool(categories)
        and all(covered(c, True) for c in categories)
    )
    if has_consent or soft:
        return (
            "frequency_cap" if h.recent_sends >= config.marketing.frequency_cap.max else "eligible"
        )
    if opted_out:
        return "opted_out_at_collection"
    if not qualifying:
        return "no_basis"
    if third_party:
        return "third_party_purpose"
    if categories and all(covered(c, False) for c in categories):
        return "lapsed"
    return "category_mismatch"


def assert_bases_agree(
    row: Any, held: list[Basis], purpose: str, categories: list[str], config: Any
) -> None:
    """What `current_bases` lists for a contact and what the audience query decides for a
    campaign (its row for the contact) say the same about its basis."""
    context = (row, held, purpose, categories)
    sends = row.reason in ("eligible", "frequency_cap")  # C12: the cap is not about the basis
    if row.reason == "suppressed":  # C16, C22: an objection leaves no basis on either side
        assert held == [] and row.basis_kind is None, context
        return
    consent = {b.purpose: b for b in held if b.kind == "consent"}
    soft = [b for b in held if b.kind == "soft_opt_in"]
    assert all(b.categories for b in soft), context
    bought = {c for b in soft for c in b.categories or ()}
    # C8: each campaign category is similar to one a soft-opt-in basis covers; C9: never for a
    # third-party purpose; a campaign about no category is not about similar products.
    similar = [config.categories.similar_to(c) for c in categories]
    soft_covers = bool(similar) and all(s & bought for s in similar)
    third_party = purpose in config.marketing.third_party_purposes
    if purpose in consent:  # C1-C4, C31: consent for the purpose, the same event
        assert sends and row.basis_kind == "consent", context
        assert consent[purpose].consent_event_id == str(row.consent_event_id), context
    elif soft_covers and not third_party:  # C6-C8, C10
        assert sends and row.basis_kind == "soft_opt_in", context
        # The evidence: the latest basis with a similar category, the greatest id at a tie.
        evidence = max(
            (b for b in soft if set().union(*similar) & set(b.categories or ())),
            key=lambda b: (b.since, b.order_id),
        )
        assert row.order_id == evidence.order_id, context
    else:
        assert not sends and row.basis_kind is None, context
        if soft_covers:  # C9: a soft-opt-in basis, refused for a third-party purpose
            assert row.reason == "third_party_purpose", context
        elif soft and not categories and not third_party:  # no category: not similar (C8)
            assert row.reason == "category_mismatch", context


def contact_body(i: int, h: History) -> dict[str, Any]:
    return factories.contact(
        f"c{i}@example.be",
        consents=[
            factories.consent(
                e.purpose,
                granted=e.granted,
                checkbox_prechecked=e.prechecked,
                captured_at=(NOW - timedelta(days=e.days_ago, hours=1)).isoformat(),
            )
            for e in h.events
        ],
        orders=[
            factories.order(
                f"SO-{i}-{j}",
                categories=sorted(o.categories),
                placed_at=(NOW - timedelta(days=o.days_ago, hours=1)).isoformat(),
                status="completed" if o.completed else "cancelled",
                marketing_opt_out_offered=o.offered,
                marketing_opt_out_used=o.used,
            )
            for j, o in enumerate(h.orders)
        ],
    )


async def check(
    settings_: Settings, people: list[History], purpose: str, categories: list[str]
) -> None:
    clock = FixedClock(NOW)
    services = Services.build(settings_, clock)
    ctx = services.context
    try:
        await empty_tables(services)
        async with services.db.sessions() as session:
            items = [
                (i, ContactIn.model_validate(contact_body(i, h))) for i, h in enumerate(people)
            ]
            outcomes = await ingest_contacts(session, items, ctx)
            ids = [o.contact_id for o in outcomes]
            earlier = Campaign(
                id="e" * 32,
                name="earlier",
                purpose=purpose,
                subject="x",
                template="newsletter.html",
                status="done",
                created_at=NOW,
                updated_at=NOW,
            )
            session.add(earlier)
            for i, h in enumerate(people):
                if h.suppressed:
                    await suppress(
                        session,
                        f"c{i}@example.be",
                        reason="unsubscribe",
                        channel="one_click",
                        clock=clock,
                        hasher=ctx.hasher,
                    )
                for run in range(h.recent_sends):
                    sent = NOW - timedelta(days=run * 2, hours=1)
                    session.add(
                        Delivery(
                            campaign_id=earlier.id,
                            run=run,
                            contact_id=ids[i],
                            status="sent",
                            queued_at=sent,
                            sent_at=sent,
                        )
                    )
            created = await create_campaign(
                session,
                CampaignIn(
                    name="p",
                    purpose=purpose,
                    categories=categories,
                    subject="s",
                    template="newsletter.html",
                ),
                ctx,
                ROOT / "templates" / "email",
            )
            _, target = await load_target(session, created.id)
            rules = AudienceRules.for_campaign(target, ctx.config, NOW)
            reasons = {
                row.contact_id: row.reason for row in await session.execute(audience_query(rules))
            }
            held = await current_bases(session, ids, clock=clock, policy=ctx.config.marketing)
            for p, cs in CHECKED_CAMPAIGNS:
                checked = CampaignTarget("x" * 32, p, tuple(cs))
                audience = audience_query(AudienceRules.for_campaign(checked, ctx.config, NOW))
                for row in await session.execute(audience):
                    assert_bases_agree(row, held[row.contact_id], p, cs, ctx.config)
            added = await materialise(session, target, ctx)
            delivered = {
                d.contact_id: d.status
                for d in (
                    await session.execute(
                        sa.select(Delivery).where(Delivery.campaign_id == created.id)
                    )
                ).scalars()
            }
            for i, h in enumerate(people):
                expected = expected_reason(h, purpose, categories, ctx.config)
                assert reasons[ids[i]] == expected, (h, purpose, categories)
                why = await explain(session, ids[i], created.id, ctx)
                assert why.eligible == (expected == "eligible")
                assert (why.basis is not None) == (expected in ("eligible", "frequency_cap"))
                status = delivered.get(ids[i])
                assert status == {"eligible": "queued", "frequency_cap": "skipped"}.get(expected)
                if h.suppressed:
                    assert status is None and why.basis is None
            assert added == len(delivered)
            await session.rollback()
    finally:
        await services.close()


def bought(categories: str, days_ago: int, used: bool = False) -> Order:
    return Order(frozenset(categories.split()), days_ago, True, True, used)


# Evidence where the two readings of a basis could part, checked every run: consent and soft
# opt-in together; orders on either side of the 24-month edge (C10: 730 days before NOW, each
# placed an hour earlier); an opt-out used at collection beside a qualifying order (C7); a
# suppressed customer (C16, C22); a capped one (C12); a pre-ticked box (C2).
EDGES = [
    History((Event("promotions", True, False, 10),), (bought("tea", 100),), False, 0),
    History((), (bought("herbal-tea", 729), bought("baby-food", 730)), False, 0),
    History((), (bought("tea", 50), bought("baby-food", 40, used=True)), False, 0),
    History((Event("newsletter", True, False, 5),), (bought("tea", 5),), True, 0),
    History((Event("partner_offers", True, False, 3),), (bought("baby-food", 9),), False, 2),
    History((Event("newsletter", True, True, 1),), (bought("tea herbal-tea", 300),), False, 1),
]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(people=st.lists(histories, min_size=1, max_size=6), target=campaigns)
@example(people=EDGES, target=("promotions", ["tea"]))
def test_engine_agrees_with_the_rules(settings, people, target):
    purpose, categories = target
    run_in_thread(lambda: check(settings, people, purpose, categories))
