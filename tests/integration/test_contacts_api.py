"""The shop-backend contact API (API.md), end to end over HTTP on SQLite and PostgreSQL.

Each test names the compliance rule it holds (RULES.md).
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from campaigns.models import ConsentEvent, Contact, OrderCategory, ShopOrder
from campaigns.suppression.entries import suppress
from tests import factories

pytestmark = pytest.mark.integration

CONTACTS = "/api/v1/contacts"


async def push(client: Any, keys: dict[str, Any], body: dict[str, Any]) -> Any:
    return await client.post(CONTACTS, json=body, headers=keys["shop"])


async def count(services: Any, table: Any) -> int:
    async with services.db.sessions() as session:
        return int((await session.execute(sa.select(sa.func.count()).select_from(table))).scalar())


def kinds(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(b["kind"], b.get("purpose")) for b in body["bases"]]


async def test_c1_contact_without_consent_or_order_has_no_basis(app_client, keys):
    response = await push(app_client, keys, factories.contact())
    assert response.status_code == 201
    assert response.json()["bases"] == []


async def test_api_example_creates_contact_with_both_bases(app_client, keys):
    body = factories.contact(
        external_id="cust-42", orders=[factories.order()], consents=[factories.consent()]
    )
    response = await push(app_client, keys, body)
    assert response.status_code == 201, response.text
    data = response.json()
    assert data["email"] == "an@example.be"
    assert data["refused"] == []
    consent, soft = data["bases"]
    assert consent == {
        "kind": "consent",
        "purpose": "newsletter",
        "since": "2026-11-20T10:00:00Z",
        "consent_event_id": consent["consent_event_id"],
    }
    assert soft["kind"] == "soft_opt_in"
    assert soft["categories"] == ["tea"]
    assert soft["order_id"] == "SO-1001"
    assert soft["until"] == "2028-11-20T10:00:00Z"  # C10: 24 months after the order


async def test_email_is_normalised_and_is_the_key(app_client, keys, services):
    first = await push(app_client, keys, factories.contact("  An.Peeters@EXAMPLE.be "))
    second = await push(app_client, keys, factories.contact("an.peeters@example.BE", name="An P."))
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert second.json()["email"] == "an.peeters@example.be"
    assert second.json()["name"] == "An P."
    assert await count(services, Contact) == 1


async def test_c21_non_ascii_addresses_are_accepted_and_normalised_to_one_key(
    app_client, keys, services
):
    """A UTF-8 local part is accepted (email-validator, SMTPUTF8 allowed), NFC and lower case;
    an IDN domain is kept as U-labels whichever form the shop sends, so both spellings are one
    contact (and one suppression key, C21). The dispatcher writes it in the form the relay
    needs (A-labels, or UTF-8 over SMTPUTF8)."""
    first = await push(app_client, keys, factories.contact("JOSÉ@Bücher.BE"))
    assert first.status_code == 201 and first.json()["email"] == "josé@bücher.be"
    decomposed = await push(app_client, keys, factories.contact("Jose\u0301@xn--bcher-kva.be"))
    assert decomposed.status_code == 200 and decomposed.json()["id"] == first.json()["id"]
    a_label = await push(app_client, keys, factories.contact("jose@xn--bcher-kva.be"))
    assert a_label.status_code == 201 and a_label.json()["email"] == "jose@bücher.be"
    refused = await push(app_client, keys, factories.contact("jo\u200bsé@example.be"))
    assert refused.status_code == 422 and refused.json()["extra"]["field"] == "email"
    assert await count(services, Contact) == 2


async def test_update_by_external_id_changes_the_address(app_client, keys):
    created = await push(app_client, keys, factories.contact("old@example.be", external_id="c-1"))
    moved = await push(app_client, keys, factories.contact("new@example.be", external_id="c-1"))
    assert moved.status_code == 200
    assert moved.json()["id"] == created.json()["id"]
    assert moved.json()["email"] == "new@example.be"


async def test_c6_soft_opt_in_needs_the_address_given_in_the_order(app_client, keys):
    """An order placed under the old address gives no soft opt-in to the new one (C6)."""
    await push(
        app_client,
        keys,
        factories.contact("old@example.be", external_id="c-1", orders=[factories.order()]),
    )
    moved = await push(app_client, keys, factories.contact("new@example.be", external_id="c-1"))
    assert moved.json()["bases"] == []


async def test_c2_prechecked_box_is_stored_as_refused_evidence(app_client, keys, services):
    body = factories.contact(consents=[factories.consent(checkbox_prechecked=True)])
    response = await push(app_client, keys, body)
    assert response.status_code == 201
    assert response.json()["bases"] == []
    assert response.json()["refused"] == [{"item": "consents[0]", "reason": "prechecked_box"}]
    async with services.db.sessions() as session:
        event = (await session.execute(sa.select(ConsentEvent))).scalar_one()
    assert event.valid is False and event.refused_reason == "prechecked_box"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"capture_method": "terms_acceptance"}, "terms_acceptance"),
        ({"capture_method": "contest_entry"}, "contest_entry"),
        ({"capture_method": "silence"}, "silence"),
        ({"checkbox_prechecked": None}, "checkbox_state_unknown"),
    ],
)
async def test_c2_no_positive_act_gives_no_basis(app_client, keys, overrides, reason):
    body = factories.contact(consents=[factories.consent(**overrides)])
    response = await push(app_client, keys, body)
    assert response.json()["bases"] == []
    assert response.json()["refused"] == [{"item": "consents[0]", "reason": reason}]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"captured_at": None}, "missing_captured_at"),
        ({"wording": None}, "missing_wording"),
        ({"wording": ""}, "missing_wording"),
        ({"wording_version": None}, "missing_wording_version"),
        ({"channel": None}, "missing_channel"),
        ({"captured_at": "2027-01-01T00:00:00Z"}, "captured_in_future"),
    ],
)
async def test_c4_incomplete_evidence_gives_no_basis(app_client, keys, overrides, reason):
    body = factories.contact(consents=[factories.consent(**overrides)])
    response = await push(app_client, keys, body)
    assert response.status_code == 201
    assert response.json()["bases"] == []
    assert response.json()["refused"] == [{"item": "consents[0]", "reason": reason}]


async def test_c4_url_alone_is_enough_capture_channel(app_client, keys):
    body = factories.contact(
        consents=[factories.consent(channel=None, url="https://shop.example.be/account")]
    )
    response = await push(app_client, keys, body)
    assert kinds(response.json()) == [("consent", "newsletter")]


async def test_c5_web_form_consent_needs_double_opt_in(app_client, keys):
    body = factories.contact(consents=[factories.consent(channel="web_form")])
    response = await push(app_client, keys, body)
    assert response.json()["bases"] == []
    assert response.json()["refused"] == [
        {"item": "consents[0]", "reason": "double_opt_in_required"}
    ]


async def test_c3_consent_is_per_purpose(app_client, keys):
    body = factories.contact(consents=[factories.consent("promotions")])
    response = await push(app_client, keys, body)
    assert kinds(response.json()) == [("consent", "promotions")]


async def test_c3_unknown_purpose_is_422_naming_it_and_stores_nothing(app_client, keys, services):
    body = factories.contact(consents=[factories.consent("astrology")])
    response = await push(app_client, keys, body)
    assert response.status_code == 422
    error = response.json()
    assert "astrology" in error["detail"]
    assert error["extra"]["field"] == "consents[0].purpose"
    assert await count(services, Contact) == 0


async def test_unknown_category_is_422_naming_it(app_client, keys, services):
    body = factories.contact(orders=[factories.order(categories=["tea", "whisky"])])
    response = await push(app_client, keys, body)
    assert response.status_code == 422
    assert "whisky" in response.json()["detail"]
    assert response.json()["extra"]["field"] == "orders[0].categories[1]"
    assert await count(services, ShopOrder) == 0


async def test_c31_withdrawal_ends_that_purpose_only_and_keeps_evidence(app_client, keys, services):
    grants = [factories.consent("newsletter"), factories.consent("promotions")]
    await push(app_client, keys, factories.contact(consents=grants))
    withdrawal = factories.consent(
        "newsletter",
        granted=False,
        captured_at="2026-11-25T08:00:00Z",
        wording=None,
        wording_version=None,
        checkbox_prechecked=None,
    )
    response = await push(app_client, keys, factories.contact(consents=[withdrawal]))
    assert kinds(response.json()) == [("consent", "promotions")]
    assert await count(services, ConsentEvent) == 3  # the grant is kept, the withdrawal added


async def test_c31_older_grant_pushed_late_does_not_override_withdrawal(app_client, keys):
    withdrawal = factories.consent("newsletter", granted=False, captured_at="2026-11-25T08:00:00Z")
    await push(app_client, keys, factories.contact(consents=[withdrawal]))
    late_grant = factories.consent("newsletter", captured_at="2026-11-20T08:00:00Z")
    response = await push(app_client, keys, factories.contact(consents=[late_grant]))
    assert response.json()["bases"] == []


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"marketing_opt_out_offered": False}, "opt_out_not_offered"),
        ({"marketing_opt_out_used": True}, "opted_out_at_collection"),
        ({"status": "cancelled"}, "order_not_completed"),
        ({"status": "pending"}, "order_not_completed"),
    ],
)
async def test_c6_soft_opt_in_conditions(app_client, keys, overrides, reason):
    body = factories.contact(orders=[factories.order(**overrides)])
    response = await push(app_client, keys, body)
    assert response.json()["bases"] == []
    assert response.json()["refused"] == [{"item": "orders[0]", "reason": reason}]


async def test_c7_opt_out_at_collection_blocks_later_orders_too(app_client, keys):
    opted_out = factories.order(
        "SO-1", placed_at="2026-01-10T10:00:00Z", marketing_opt_out_used=True
    )
    later = factories.order("SO-2", placed_at="2026-11-20T10:00:00Z")
    response = await push(app_client, keys, factories.contact(orders=[opted_out, later]))
    assert response.json()["bases"] == []


async def test_c7_opt_out_used_stays_used_when_order_is_pushed_again(app_client, keys):
    await push(
        app_client, keys, factories.contact(orders=[factories.order(marketing_opt_out_used=True)])
    )
    response = await push(app_client, keys, factories.contact(orders=[factories.order()]))
    assert response.json()["bases"] == []


async def test_c8_soft_opt_in_lists_the_categories_bought(app_client, keys):
    tea = factories.order("SO-1", placed_at="2026-03-01T10:00:00Z", categories=["tea"])
    baby = factories.order(
        "SO-2", placed_at="2026-10-01T10:00:00Z", categories=["baby-food", "tea"]
    )
    response = await push(app_client, keys, factories.contact(orders=[tea, baby]))
    (basis,) = response.json()["bases"]
    # Each category is covered by its latest order: both by SO-2 here.
    assert basis["categories"] == ["baby-food", "tea"]
    assert basis["order_id"] == "SO-2"


async def test_c10_soft_opt_in_lapses_after_the_window(app_client, keys):
    old = factories.order("SO-1", placed_at="2024-11-27T11:00:00Z")  # 24 months + 1 hour ago
    response = await push(app_client, keys, factories.contact(orders=[old]))
    assert response.json()["bases"] == []
    assert response.json()["refused"] == [{"item": "orders[0]", "reason": "lapsed"}]


async def test_c10_window_is_counted_from_the_last_qualifying_order(app_client, keys):
    old = factories.order("SO-1", placed_at="2024-06-01T10:00:00Z")
    recent = factories.order("SO-2", placed_at="2026-02-01T10:00:00Z")
    response = await push(app_client, keys, factories.contact(orders=[old, recent]))
    (basis,) = response.json()["bases"]
    assert basis["order_id"] == "SO-2"
    assert basis["until"] == "2028-02-01T10:00:00Z"


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ({"channel": "checkout", "first_party": False}, "source.first_party"),
        ({"channel": "purchased_list", "first_party": True}, "source.channel"),
        ({"channel": "co_registration", "first_party": True}, "source.channel"),
    ],
)
async def test_c11_not_first_party_is_refused_and_nothing_stored(
    app_client, keys, services, source, field
):
    body = factories.contact(
        source=source, orders=[factories.order()], consents=[factories.consent()]
    )
    response = await push(app_client, keys, body)
    assert response.status_code == 422
    assert response.json()["extra"] == {"field": field, "reason": "not_first_party"}
    assert "C11" in response.json()["detail"]
    for table in (Contact, ShopOrder, ConsentEvent):
        assert await count(services, table) == 0


async def test_c22_suppressed_address_gets_no_basis(app_client, keys, services, clock):
    async with services.db.sessions() as session:
        await suppress(
            session,
            "An@Example.be",
            reason="unsubscribe",
            channel="one_click",
            clock=clock,
            hasher=services.context.hasher,
        )
        await session.commit()
    body = factories.contact(orders=[factories.order()], consents=[factories.consent()])
    response = await push(app_client, keys, body)
    assert response.status_code == 201
    data = response.json()
    assert data["bases"] == [] and data["suppressed"] is True
    assert data["refused"][0] == {"item": "email", "reason": "suppressed"}


async def test_same_order_pushed_twice_is_one_order(app_client, keys, services):
    body = factories.contact(orders=[factories.order()], consents=[factories.consent()])
    first = await push(app_client, keys, body)
    second = await push(app_client, keys, body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["bases"] == second.json()["bases"]
    assert await count(services, ShopOrder) == 1
    assert await count(services, OrderCategory) == 1
    assert await count(services, ConsentEvent) == 1  # identical consent stored once


async def test_order_of_another_contact_is_409_and_changes_nothing(app_client, keys, services):
    await push(app_client, keys, factories.contact("an@example.be", orders=[factories.order()]))
    other = factories.contact(
        "bo@example.be", orders=[factories.order()], consents=[factories.consent()]
    )
    response = await push(app_client, keys, other)
    assert response.status_code == 409
    assert response.json()["extra"]["field"] == "orders[0].id"
    assert await count(services, Contact) == 1
    assert await count(services, ConsentEvent) == 0


async def test_email_and_external_id_of_two_contacts_is_409(app_client, keys):
    await push(app_client, keys, factories.contact("an@example.be", external_id="c-1"))
    await push(app_client, keys, factories.contact("bo@example.be", external_id="c-2"))
    response = await push(app_client, keys, factories.contact("an@example.be", external_id="c-2"))
    assert response.status_code == 409
    assert response.json()["extra"]["field"] == "external_id"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"email": "an@example.be\r\nBcc: x@example.be"}, "email"),
        ({"name": "An\r\nBcc: x@example.be"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"locale": "de"}, "locale"),
        ({"external_id": "has spaces"}, "external_id"),
        ({"source": {"channel": "checkout"}}, "source.first_party"),
        ({"orders": [{"id": "SO-1"}]}, "orders[0].placed_at"),
        ({"orders": [factories.order(placed_at="2026-11-20T10:00:00")]}, "orders[0].placed_at"),
        ({"consents": [factories.consent(granted="maybe")]}, "consents[0].granted"),
        ({"consents": [factories.consent(ip="999.1.1.1")]}, "consents[0].ip"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_changes_nothing(
    app_client, keys, services, patch, field
):
    response = await push(app_client, keys, {**factories.contact(), **patch})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["status_code"] == 422
    assert error["extra"]["field"] == field
    assert await count(services, Contact) == 0


async def test_malformed_json_is_400_in_the_error_shape(app_client, keys):
    response = await app_client.post(
        CONTACTS, content=b"{not json", headers={**keys["shop"], "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert set(response.json()) == {"status_code", "detail", "extra"}


async def test_body_over_one_mebibyte_is_413(app_client, keys, services):
    body = factories.contact(name="x" * (1024 * 1024))  # refused before it is even parsed
    response = await app_client.post(CONTACTS, json=body, headers=keys["shop"])
    assert response.status_code == 413
    assert response.json()["status_code"] == 413
    assert await count(services, Contact) == 0


async def test_get_contact_shows_ledger_orders_bases_and_suppression(app_client, keys):
    body = factories.contact(
        orders=[factories.order()],
        consents=[factories.consent(), factories.consent("promotions", checkbox_prechecked=True)],
    )
    contact_id = (await push(app_client, keys, body)).json()["id"]
    response = await app_client.get(f"{CONTACTS}/{contact_id}", headers=keys["marketer"])
    assert response.status_code == 200
    data = response.json()
    assert data["suppressed"] is False
    assert [(c["purpose"], c["valid"], c["refused_reason"]) for c in data["consents"]] == [
        ("newsletter", True, None),
        ("promotions", False, "prechecked_box"),
    ]
    assert data["consents"][0]["wording_version"] == "2026-01"
    assert data["orders"] == [
        {
            "id": "SO-1001",
            "placed_at": "2026-11-20T10:00:00Z",
            "status": "completed",
            "categories": ["tea"],
            "marketing_opt_out_offered": True,
            "marketing_opt_out_used": False,
        }
    ]
    assert kinds(data) == [("consent", "newsletter"), ("soft_opt_in", None)]


async def test_get_unknown_contact_is_404(app_client, keys):
    response = await app_client.get(f"{CONTACTS}/nope", headers=keys["marketer"])
    assert response.status_code == 404
    assert response.json()["status_code"] == 404
