"""Batch pushes (each item alone) and single consent decisions, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from campaigns.evidence.contacts import ingest_contacts
from campaigns.evidence.inputs import ContactIn
from campaigns.models import ConsentEvent, Contact, ShopOrder
from tests import factories
from tests.integration.test_contacts_api import count

pytestmark = pytest.mark.integration

BATCH = "/api/v1/contacts/batch"
CONSENTS = "/api/v1/consents"


async def test_batch_stores_valid_items_and_reports_invalid_ones_by_index(
    app_client, keys, services
):
    items = [
        factories.contact("a@example.be", orders=[factories.order("SO-1")]),
        factories.contact("not an address"),
        factories.contact("c@example.be", source={"channel": "broker", "first_party": False}),
        factories.contact("d@example.be", consents=[factories.consent("astrology")]),
        factories.contact("e@example.be", consents=[factories.consent(checkbox_prechecked=True)]),
    ]
    response = await app_client.post(BATCH, json={"contacts": items}, headers=keys["shop"])
    assert response.status_code == 207
    results = response.json()["results"]
    assert [(r["index"], r["status"]) for r in results] == [
        (0, 201),
        (1, 422),
        (2, 422),
        (3, 422),
        (4, 201),
    ]
    assert results[1]["field"] == "email"
    assert results[2]["field"] == "source.first_party"  # C11
    assert "astrology" in results[3]["detail"]
    assert results[4]["refused"] == [{"item": "consents[0]", "reason": "prechecked_box"}]
    assert results[0]["id"]
    async with services.db.sessions() as session:
        emails = set((await session.execute(sa.select(Contact.email))).scalars())
    assert emails == {"a@example.be", "e@example.be"}


async def test_batch_conflicting_item_changes_nothing_and_others_land(app_client, keys, services):
    await app_client.post(
        "/api/v1/contacts",
        json=factories.contact("owner@example.be", orders=[factories.order("SO-9")]),
        headers=keys["shop"],
    )
    items = [
        factories.contact(
            "thief@example.be", orders=[factories.order("SO-9")], consents=[factories.consent()]
        ),
        factories.contact("fine@example.be", consents=[factories.consent()]),
    ]
    response = await app_client.post(BATCH, json={"contacts": items}, headers=keys["shop"])
    results = response.json()["results"]
    assert [(r["status"], r.get("field")) for r in results] == [(409, "orders[0].id"), (201, None)]
    assert await count(services, Contact) == 2
    assert await count(services, ConsentEvent) == 1


async def test_batch_repeating_a_contact_applies_items_in_order(app_client, keys, services):
    items = [
        factories.contact("a@example.be", name="First", consents=[factories.consent()]),
        factories.contact(
            "A@Example.be",
            name="Second",
            consents=[factories.consent(granted=False, captured_at="2026-11-21T10:00:00Z")],
        ),
    ]
    response = await app_client.post(BATCH, json={"contacts": items}, headers=keys["shop"])
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 200]
    assert results[0]["id"] == results[1]["id"]
    detail = await app_client.get(f"/api/v1/contacts/{results[0]['id']}", headers=keys["admin"])
    assert detail.json()["name"] == "Second"
    assert detail.json()["bases"] == []  # C31: the later withdrawal wins


async def test_batch_is_idempotent(app_client, keys, services):
    items = [
        factories.contact(
            f"c{i}@example.be", orders=[factories.order(f"SO-{i}")], consents=[factories.consent()]
        )
        for i in range(50)
    ]
    first = await app_client.post(BATCH, json={"contacts": items}, headers=keys["shop"])
    second = await app_client.post(BATCH, json={"contacts": items}, headers=keys["shop"])
    assert {r["status"] for r in first.json()["results"]} == {201}
    assert {r["status"] for r in second.json()["results"]} == {200}
    assert [r["id"] for r in first.json()["results"]] == [r["id"] for r in second.json()["results"]]
    assert await count(services, Contact) == 50
    assert await count(services, ShopOrder) == 50
    assert await count(services, ConsentEvent) == 50


@pytest.mark.parametrize("size", [0, 1001])
async def test_batch_size_limits(app_client, keys, size):
    items = [factories.contact(f"c{i}@example.be") for i in range(size)]
    response = await app_client.post(BATCH, json={"contacts": items}, headers=keys["shop"])
    assert response.status_code == 422
    assert response.json()["extra"]["field"] == "contacts"


async def test_racing_creations_of_one_address_retry_and_make_one_contact(services):
    """Two transactions create the same new contact: the loser hits the unique key, is rolled
    back and run again, and then updates the winner's row. Nothing is lost or doubled."""
    item = [(0, ContactIn.model_validate(factories.contact(consents=[factories.consent()])))]
    ctx = services.context
    async with services.db.sessions() as first:
        (created,) = await ingest_contacts(first, item, ctx)  # inserted, not yet committed
        racer = asyncio.create_task(
            services.db.transaction(lambda session: ingest_contacts(session, item, ctx))
        )
        await asyncio.sleep(0.5)  # the racer found no contact and now waits on the unique key
        assert not racer.done()
        await first.commit()
    (raced,) = await asyncio.wait_for(racer, timeout=30)
    assert (created.result, raced.result) == ("created", "updated")
    assert raced.contact_id == created.contact_id
    assert await count(services, Contact) == 1
    assert await count(services, ConsentEvent) == 1


async def _contact_id(client: Any, keys: dict[str, Any], **kw: Any) -> str:
    response = await client.post(
        "/api/v1/contacts", json=factories.contact(**kw), headers=keys["shop"]
    )
    return str(response.json()["id"])


async def test_consent_grant_by_email_gives_basis(app_client, keys):
    await _contact_id(app_client, keys)
    body = {"email": "AN@example.be", **factories.consent("promotions")}
    response = await app_client.post(CONSENTS, json=body, headers=keys["shop"])
    assert response.status_code == 201, response.text
    data = response.json()
    assert data["valid"] is True and data["refused_reason"] is None
    assert [b["purpose"] for b in data["bases"]] == ["promotions"]
    again = await app_client.post(CONSENTS, json=body, headers=keys["shop"])
    assert again.status_code == 200  # identical event: stored once
    assert again.json()["consent_event_id"] == data["consent_event_id"]


async def test_c31_withdrawal_by_contact_id_needs_no_evidence(app_client, keys, services):
    contact_id = await _contact_id(app_client, keys, consents=[factories.consent()])
    body = {"contact_id": contact_id, "purpose": "newsletter", "granted": False}
    response = await app_client.post(CONSENTS, json=body, headers=keys["shop"])
    assert response.status_code == 201
    assert response.json()["valid"] is True
    assert response.json()["bases"] == []
    assert await count(services, ConsentEvent) == 2  # the grant is kept as evidence


async def test_c2_consent_endpoint_refuses_prechecked_box(app_client, keys):
    await _contact_id(app_client, keys)
    body = {"email": "an@example.be", **factories.consent(checkbox_prechecked=True)}
    response = await app_client.post(CONSENTS, json=body, headers=keys["shop"])
    assert response.status_code == 201
    assert response.json()["valid"] is False
    assert response.json()["refused_reason"] == "prechecked_box"
    assert response.json()["bases"] == []


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"email": "nobody@example.be", **factories.consent()}, 404, None),
        ({**factories.consent()}, 422, "email"),
        ({"email": "an@example.be", **factories.consent("astrology")}, 422, "purpose"),
        ({"email": "an@example.be", "contact_id": "x", **factories.consent()}, 422, "email"),
    ],
)
async def test_consent_endpoint_errors(app_client, keys, services, body, status, field):
    await _contact_id(app_client, keys)
    response = await app_client.post(CONSENTS, json=body, headers=keys["shop"])
    assert response.status_code == status
    assert response.json()["extra"].get("field") == field
    assert await count(services, ConsentEvent) == 0
