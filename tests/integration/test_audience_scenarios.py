"""The legal-basis engine, one scenario per rule (RULES.md C1-C12, C16, C21-C22, C31).

Each scenario builds a one-contact world through the real API (and the domain for what has
no API yet: deliveries), then asserts both the audience counts and the `why` answer, which
must agree: they come from the same query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from campaigns.models import Campaign, Delivery
from tests import factories
from tests.conftest import NOW

pytestmark = pytest.mark.integration

TEA = ["tea"]


@dataclass
class Scenario:
    rule: str
    title: str
    contact: dict[str, Any]
    campaign: dict[str, Any]
    reason: str  # "eligible" or the exclusion reason
    basis: str | None = None  # "consent" | "soft_opt_in" for eligible (and capped) contacts
    suppress: str | None = None  # a suppression reason to record before asking
    sends_days_ago: list[int] = field(default_factory=list)  # earlier marketing mails


def months_ago(months: int, days: int = 0) -> str:
    return (NOW - timedelta(days=30.44 * months + days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def grant(purpose: str = "newsletter", **kw: Any) -> dict[str, Any]:
    return factories.consent(purpose, **kw)


def withdraw(purpose: str = "newsletter") -> dict[str, Any]:
    return factories.consent(purpose, granted=False, captured_at="2026-11-25T08:00:00Z")


def bought(categories: list[str], when: str = "2026-11-20T10:00:00Z", **kw: Any) -> dict:
    return factories.order(
        f"SO-{abs(hash((tuple(categories), when))) % 10**8}",
        categories=categories,
        placed_at=when,
        **kw,
    )


def person(orders: list[dict] | None = None, consents: list[dict] | None = None) -> dict:
    return factories.contact("an@example.be", orders=orders or [], consents=consents or [])


def campaign(purpose: str = "newsletter", categories: list[str] | None = None) -> dict:
    return {
        "name": "Test",
        "purpose": purpose,
        "categories": categories or [],
        "subject": "Nieuws",
        "template": "newsletter.html",
    }


SCENARIOS = [
    Scenario("C1", "no consent and no order", person(), campaign(), "no_basis"),
    Scenario(
        "C1",
        "consent for the campaign's purpose",
        person(consents=[grant()]),
        campaign(),
        "eligible",
        "consent",
    ),
    Scenario(
        "C2",
        "pre-ticked box gives nothing",
        person(consents=[grant(checkbox_prechecked=True)]),
        campaign(),
        "no_basis",
    ),
    Scenario(
        "C2",
        "terms acceptance gives nothing",
        person(consents=[grant(capture_method="terms_acceptance")]),
        campaign(),
        "no_basis",
    ),
    Scenario(
        "C3",
        "consent for another purpose",
        person(consents=[grant("promotions")]),
        campaign("newsletter"),
        "no_basis",
    ),
    Scenario(
        "C4",
        "consent without wording version",
        person(consents=[grant(wording_version=None)]),
        campaign(),
        "no_basis",
    ),
    Scenario(
        "C5",
        "web-form consent without double opt-in",
        person(consents=[grant(channel="web_form")]),
        campaign(),
        "no_basis",
    ),
    Scenario(
        "C6",
        "customer of a similar product",
        person(orders=[bought(TEA)]),
        campaign("promotions", TEA),
        "eligible",
        "soft_opt_in",
    ),
    Scenario(
        "C6",
        "opt-out not offered at collection",
        person(orders=[bought(TEA, marketing_opt_out_offered=False)]),
        campaign("promotions", TEA),
        "no_basis",
    ),
    Scenario(
        "C6",
        "order not completed",
        person(orders=[bought(TEA, status="cancelled")]),
        campaign("promotions", TEA),
        "no_basis",
    ),
    Scenario(
        "C7",
        "opt-out used at collection",
        person(orders=[bought(TEA, marketing_opt_out_used=True)]),
        campaign("promotions", TEA),
        "opted_out_at_collection",
    ),
    Scenario(
        "C7",
        "opt-out used once blocks a later order",
        person(orders=[bought(TEA, months_ago(6), marketing_opt_out_used=True), bought(TEA)]),
        campaign("promotions", TEA),
        "opted_out_at_collection",
    ),
    Scenario(
        "C8",
        "a category is similar to itself and to its map entries",
        person(orders=[bought(["herbal-tea"])]),
        campaign("promotions", TEA),
        "eligible",
        "soft_opt_in",
    ),
    Scenario(
        "C8",
        "unrelated category",
        person(orders=[bought(["baby-food"])]),
        campaign("promotions", TEA),
        "category_mismatch",
    ),
    Scenario(
        "C8",
        "every campaign category must be covered",
        person(orders=[bought(TEA)]),
        campaign("promotions", ["tea", "baby-food"]),
        "category_mismatch",
    ),
    Scenario(
        "C8",
        "a campaign about no category is not covered",
        person(orders=[bought(TEA)]),
        campaign("newsletter"),
        "category_mismatch",
    ),
    Scenario(
        "C9",
        "third-party offers are never soft opt-in",
        person(orders=[bought(TEA)]),
        campaign("partner_offers", TEA),
        "third_party_purpose",
    ),
    Scenario(
        "C9",
        "third-party offers with consent",
        person(orders=[bought(TEA)], consents=[grant("partner_offers")]),
        campaign("partner_offers", TEA),
        "eligible",
        "consent",
    ),
    Scenario(
        "C10",
        "last order older than the window",
        person(orders=[bought(TEA, months_ago(25))]),
        campaign("promotions", TEA),
        "lapsed",
    ),
    Scenario(
        "C10",
        "last order within the window",
        person(orders=[bought(TEA, months_ago(25)), bought(TEA, months_ago(23))]),
        campaign("promotions", TEA),
        "eligible",
        "soft_opt_in",
    ),
    Scenario(
        "C12",
        "two mails this week reach the cap",
        person(consents=[grant()]),
        campaign(),
        "frequency_cap",
        "consent",
        sends_days_ago=[1, 6],
    ),
    Scenario(
        "C12",
        "mails older than the window do not count",
        person(consents=[grant()]),
        campaign(),
        "eligible",
        "consent",
        sends_days_ago=[1, 8],
    ),
    Scenario(
        "C16",
        "an objection stops everything",
        person(orders=[bought(TEA)], consents=[grant("promotions")]),
        campaign("promotions", TEA),
        "suppressed",
        suppress="objection",
    ),
    Scenario(
        "C21",
        "a hard bounce suppresses",
        person(consents=[grant()]),
        campaign(),
        "suppressed",
        suppress="hard_bounce",
    ),
    Scenario(
        "C31",
        "withdrawal ends the purpose",
        person(consents=[grant(), withdraw()]),
        campaign(),
        "no_basis",
    ),
    Scenario(
        "C31",
        "withdrawal of another purpose changes nothing",
        person(consents=[grant(), withdraw("promotions")]),
        campaign(),
        "eligible",
        "consent",
    ),
    Scenario(
        "C1",
        "consent wins over soft opt-in as the recorded basis",
        person(orders=[bought(TEA)], consents=[grant("promotions")]),
        campaign("promotions", TEA),
        "eligible",
        "consent",
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: f"{s.rule}-{s.title}")
async def test_scenario(scenario: Scenario, app_client, keys, services, clock):
    pushed = await app_client.post("/api/v1/contacts", json=scenario.contact, headers=keys["shop"])
    assert pushed.status_code == 201, pushed.text
    contact_id = pushed.json()["id"]
    created = await app_client.post(
        "/api/v1/campaigns", json=scenario.campaign, headers=keys["marketer"]
    )
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]
    if scenario.suppress:
        added = await app_client.post(
            "/api/v1/suppressions",
            json={
                "email": "an@example.be",
                "reason": "manual" if scenario.suppress != "objection" else "objection",
                "channel": "test",
            },
            headers=keys["admin"],
        )
        assert added.status_code == 201
    if scenario.sends_days_ago:
        await record_sends(services, contact_id, scenario.sends_days_ago)

    audience = (
        await app_client.get(f"/api/v1/campaigns/{campaign_id}/audience", headers=keys["marketer"])
    ).json()
    why = (
        await app_client.get(
            f"/api/v1/contacts/{contact_id}/why",
            params={"campaign_id": campaign_id},
            headers=keys["marketer"],
        )
    ).json()

    if scenario.reason == "eligible":
        assert audience["eligible"] == 1
        assert audience["by_basis"][scenario.basis] == 1
        assert sum(audience["excluded"].values()) == 0
        assert why["eligible"] is True and why["reason"] is None
        assert why["basis"]["kind"] == scenario.basis
    else:
        assert audience["eligible"] == 0
        assert audience["excluded"][scenario.reason] == 1
        assert sum(audience["excluded"].values()) == 1
        assert why["eligible"] is False and why["reason"] == scenario.reason
        assert why["detail"].startswith("excluded: ")
        if scenario.basis:
            assert why["basis"]["kind"] == scenario.basis
        else:
            assert why["basis"] is None


async def record_sends(services: Any, contact_id: str, days_ago: list[int]) -> None:
    async with services.db.sessions() as session:
        earlier = Campaign(
            id="e" * 32,
            name="earlier",
            purpose="newsletter",
            subject="x",
            template="newsletter.html",
            status="done",
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(earlier)
        for run, days in enumerate(days_ago):
            sent = NOW - timedelta(days=days)
            session.add(
                Delivery(
                    campaign_id=earlier.id,
                    run=run,
                    contact_id=contact_id,
                    status="sent",
                    basis_kind="consent",
                    queued_at=sent,
                    sent_at=sent,
                )
            )
        await session.commit()


async def test_c6_an_order_not_yet_placed_gives_no_basis(app_client, keys, clock):
    """An order counts from the moment it was placed, not before (clock moved back)."""
    from datetime import timedelta

    body = person(orders=[bought(TEA, "2026-11-27T11:59:00Z")])
    contact_id = (
        await app_client.post("/api/v1/contacts", json=body, headers=keys["shop"])
    ).json()["id"]
    campaign_id = (
        await app_client.post(
            "/api/v1/campaigns", json=campaign("promotions", TEA), headers=keys["marketer"]
        )
    ).json()["id"]
    clock.set(NOW - timedelta(days=2))
    why = (
        await app_client.get(
            f"/api/v1/contacts/{contact_id}/why",
            params={"campaign_id": campaign_id},
            headers=keys["marketer"],
        )
    ).json()
    assert why["eligible"] is False and why["reason"] == "no_basis"
