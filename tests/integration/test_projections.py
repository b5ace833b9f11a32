"""The projections the audience query reads (current consent, purchase coverage and standing,
and the marketing profile made of them and the suppression list) are kept up to date by every
writer of the evidence, in the same transaction, and always equal a rebuild from the evidence
(C6-C8, C10, C16, C21-C22, C31)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from campaigns.db import as_epoch_us, epoch_us
from campaigns.evidence.projections import rebuild_statements, refresh_evidence
from campaigns.models import (
    CurrentConsent,
    MarketingProfile,
    PurchaseCoverage,
    PurchaseStanding,
    UTCDateTime,
)
from campaigns.recipients import change_preferences
from campaigns.suppression.entries import (
    AddressHasher,
    lift_unsubscribe,
    suppress,
    sync_contact_hashes,
)
from tests import factories

pytestmark = pytest.mark.integration

CONTACTS = "/api/v1/contacts"
CONSENTS = "/api/v1/consents"
TEA = ["tea"]


async def push(app_client: Any, keys: Any, body: dict[str, Any]) -> str:
    response = await app_client.post(CONTACTS, json=body, headers=keys["shop"])
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


async def campaign(app_client: Any, keys: Any, purpose: str, categories: list[str]) -> str:
    body = {
        "name": "Test",
        "purpose": purpose,
        "categories": categories,
        "subject": "Nieuws",
        "template": "newsletter.html",
    }
    response = await app_client.post("/api/v1/campaigns", json=body, headers=keys["marketer"])
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def why(app_client: Any, keys: Any, contact_id: str, campaign_id: str) -> dict[str, Any]:
    response = await app_client.get(
        f"{CONTACTS}/{contact_id}/why",
        params={"campaign_id": campaign_id},
        headers=keys["marketer"],
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def rows(services: Any, model: Any) -> list[tuple[Any, ...]]:
    table = model.__table__
    async with services.db.sessions() as session:
        result = await session.execute(sa.select(table).order_by(*table.primary_key.columns))
        return [tuple(row) for row in result]


async def test_c31_withdrawal_through_the_api_ends_the_current_consent(app_client, keys, services):
    contact_id = await push(
        app_client, keys, factories.contact(consents=[factories.consent("promotions")])
    )
    campaign_id = await campaign(app_client, keys, "promotions", [])
    assert (await why(app_client, keys, contact_id, campaign_id))["eligible"] is True
    body = {"contact_id": contact_id, "purpose": "promotions", "granted": False}
    assert (await app_client.post(CONSENTS, json=body, headers=keys["shop"])).status_code == 201
    ((_, purpose, _, granted, _),) = await rows(services, CurrentConsent)
    assert (purpose, granted) == ("promotions", False)
    answer = await why(app_client, keys, contact_id, campaign_id)
    assert answer["eligible"] is False and answer["reason"] == "no_basis"


async def test_c31_an_earlier_event_arriving_later_does_not_override(app_client, keys, services):
    """Latest by capture time wins, whatever the order the events arrive in."""
    grant = factories.consent("promotions", captured_at="2026-11-20T10:00:00Z")
    contact_id = await push(app_client, keys, factories.contact(consents=[grant]))
    campaign_id = await campaign(app_client, keys, "promotions", [])
    older_withdrawal = {
        "contact_id": contact_id,
        "purpose": "promotions",
        "granted": False,
        "captured_at": "2026-11-10T10:00:00Z",
    }
    response = await app_client.post(CONSENTS, json=older_withdrawal, headers=keys["shop"])
    assert response.status_code == 201
    assert (await why(app_client, keys, contact_id, campaign_id))["eligible"] is True
    (row,) = await rows(services, CurrentConsent)
    assert row[3] is True  # still the grant
    # A later withdrawal does end it; then an older grant pushed afterwards changes nothing.
    later = {**older_withdrawal, "captured_at": "2026-11-25T10:00:00Z"}
    assert (await app_client.post(CONSENTS, json=later, headers=keys["shop"])).status_code == 201
    old_grant = factories.consent("promotions", captured_at="2026-11-01T10:00:00Z")
    await push(app_client, keys, factories.contact(consents=[old_grant]))
    answer = await why(app_client, keys, contact_id, campaign_id)
    assert answer["eligible"] is False and answer["reason"] == "no_basis"


async def test_c31_preference_changes_update_the_current_consent(app_client, keys, services, clock):
    contact_id = await push(
        app_client, keys, factories.contact(consents=[factories.consent("newsletter")])
    )
    async with services.db.sessions() as session:
        await change_preferences(
            session,
            contact_id,
            {"newsletter": False, "promotions": True},
            wording={"promotions": "Ja, promoties"},
            stop_all=False,
            ctx=services.context,
        )
        await session.commit()
    current = {row[1]: row[3] for row in await rows(services, CurrentConsent)}
    assert current == {"newsletter": False, "promotions": True}


async def test_c10_a_later_order_moves_the_coverage(app_client, keys, services):
    old = factories.order("SO-1", placed_at="2024-09-01T10:00:00Z", categories=TEA)
    contact_id = await push(app_client, keys, factories.contact(orders=[old]))
    campaign_id = await campaign(app_client, keys, "promotions", TEA)
    assert (await why(app_client, keys, contact_id, campaign_id))["reason"] == "lapsed"
    new = factories.order("SO-2", placed_at="2026-10-01T10:00:00Z", categories=["herbal-tea"])
    await push(app_client, keys, factories.contact(orders=[new]))
    answer = await why(app_client, keys, contact_id, campaign_id)
    assert answer["eligible"] is True
    assert answer["basis"]["kind"] == "soft_opt_in" and answer["basis"]["order_id"] == "SO-2"
    coverage = {row[1]: row[2] for row in await rows(services, PurchaseCoverage)}
    assert coverage == {"tea": "SO-1", "herbal-tea": "SO-2"}


async def test_c6_an_order_cancelled_later_no_longer_covers(app_client, keys, services):
    order = factories.order("SO-1", categories=TEA)
    contact_id = await push(app_client, keys, factories.contact(orders=[order]))
    campaign_id = await campaign(app_client, keys, "promotions", TEA)
    assert (await why(app_client, keys, contact_id, campaign_id))["eligible"] is True
    await push(app_client, keys, factories.contact(orders=[{**order, "status": "cancelled"}]))
    assert await rows(services, PurchaseCoverage) == []
    assert (await why(app_client, keys, contact_id, campaign_id))["reason"] == "no_basis"


async def test_c7_an_opt_out_recorded_later_on_a_known_order(app_client, keys, services):
    order = factories.order("SO-1", categories=TEA)
    contact_id = await push(app_client, keys, factories.contact(orders=[order]))
    campaign_id = await campaign(app_client, keys, "promotions", TEA)
    used = {**order, "marketing_opt_out_used": True}
    await push(app_client, keys, factories.contact(orders=[used]))
    ((_, _, opted_out_order_id, _),) = await rows(services, PurchaseStanding)
    assert opted_out_order_id == "SO-1"
    answer = await why(app_client, keys, contact_id, campaign_id)
    assert answer["reason"] == "opted_out_at_collection"


async def test_c6_c7_a_new_address_drops_the_old_orders_and_keeps_its_own_opt_out(
    app_client, keys, services
):
    """Orders count for the address given in them (C6); an opt-out used for an address stays
    with the address, for whichever contact holds it later (C7)."""
    order = factories.order("SO-1", categories=TEA, marketing_opt_out_used=True)
    first = await push(
        app_client, keys, factories.contact("old@example.be", external_id="x-1", orders=[order])
    )
    bought = factories.order("SO-2", categories=TEA)
    await push(
        app_client, keys, factories.contact("old@example.be", external_id="x-1", orders=[bought])
    )
    campaign_id = await campaign(app_client, keys, "promotions", TEA)
    assert (await why(app_client, keys, first, campaign_id))["reason"] == (
        "opted_out_at_collection"
    )
    # The customer moves to a new address: the old address's orders no longer count.
    await push(app_client, keys, factories.contact("new@example.be", external_id="x-1"))
    assert (await why(app_client, keys, first, campaign_id))["reason"] == "no_basis"
    # Someone else now gives the old address: its opt-out is on record (C7).
    second = await push(app_client, keys, factories.contact("old@example.be"))
    answer = await why(app_client, keys, second, campaign_id)
    assert answer["reason"] == "opted_out_at_collection"


async def test_maintained_projections_equal_a_rebuild_from_the_evidence(app_client, keys, services):
    """What the writers keep is what the migration's rebuild computes (C6-C8, C10, C31)."""
    await push(
        app_client,
        keys,
        factories.contact(
            "a@example.be",
            consents=[
                factories.consent("newsletter"),
                factories.consent("newsletter", granted=False, captured_at="2026-11-21T10:00:00Z"),
                factories.consent("promotions", checkbox_prechecked=True),
            ],
            orders=[
                factories.order("SO-A1", categories=["tea", "baby-food"]),
                factories.order("SO-A2", placed_at="2025-01-01T10:00:00Z", categories=TEA),
                factories.order("SO-A3", status="cancelled", categories=["herbal-tea"]),
            ],
        ),
    )
    await push(
        app_client,
        keys,
        factories.contact(
            "b@example.be",
            orders=[factories.order("SO-B1", marketing_opt_out_used=True)],
            consents=[factories.consent("promotions")],
        ),
    )
    models = (CurrentConsent, PurchaseCoverage, PurchaseStanding, MarketingProfile)
    maintained = [await rows(services, model) for model in models]
    async with services.db.sessions() as session:
        for statement in rebuild_statements():
            await session.execute(statement)
        await session.commit()
    assert [await rows(services, model) for model in models] == maintained
    assert all(maintained)


async def profile_matches_a_rebuild(services: Any) -> None:
    maintained = await rows(services, MarketingProfile)
    async with services.db.sessions() as session:
        for statement in rebuild_statements():
            await session.execute(statement)
        await session.commit()
    assert await rows(services, MarketingProfile) == maintained


async def suppressed_flags(services: Any) -> list[bool]:
    return [row[1] for row in await rows(services, MarketingProfile)]


async def test_c16_c22_the_profile_follows_suppression_entries(app_client, keys, services, clock):
    """Adding an entry marks the profile at once (the audience and `why` say suppressed);
    lifting an unsubscribe after a double opt-in clears it; a complaint is never lifted."""
    consented = factories.contact("an@example.be", consents=[factories.consent("promotions")])
    contact_id = await push(app_client, keys, consented)
    await push(app_client, keys, factories.contact("other@example.be"))
    campaign_id = await campaign(app_client, keys, "promotions", TEA)
    hasher, args = services.context.hasher, {"clock": clock, "channel": "link"}
    async with services.db.sessions() as session:
        await suppress(session, "An@Example.be", reason="unsubscribe", hasher=hasher, **args)
        await session.commit()
    assert sorted(await suppressed_flags(services)) == [False, True]
    assert (await why(app_client, keys, contact_id, campaign_id))["reason"] == "suppressed"
    await profile_matches_a_rebuild(services)

    async with services.db.sessions() as session:
        assert await lift_unsubscribe(session, "an@example.be", clock=clock, hasher=hasher)
        await session.commit()
    assert await suppressed_flags(services) == [False, False]
    assert (await why(app_client, keys, contact_id, campaign_id))["eligible"] is True

    async with services.db.sessions() as session:
        await suppress(session, "an@example.be", reason="complaint", hasher=hasher, **args)
        assert not await lift_unsubscribe(session, "an@example.be", clock=clock, hasher=hasher)
        await session.commit()
    assert (await why(app_client, keys, contact_id, campaign_id))["reason"] == "suppressed"
    await profile_matches_a_rebuild(services)


async def object_to_an(session: Any, hasher: AddressHasher, clock: Any) -> None:
    """A staff-entered objection for an@example.be, committed."""
    await suppress(
        session, "an@example.be", reason="objection", channel="admin", clock=clock, hasher=hasher
    )
    await session.commit()


async def test_c21_an_entry_under_a_new_secret_marks_the_profile_once_hashes_are_synced(
    app_client, keys, services, clock
):
    """After a rotation, an entry made with the new secret matches a contact once its address
    is hashed under that secret too (at startup): the sync brings the profiles up to date."""
    contact_id = await push(
        app_client, keys, factories.contact(consents=[factories.consent("promotions")])
    )
    rotated = AddressHasher(
        (b"a-newer-secret-key-after-rotation-0123456789", *services.context.hasher.keys)
    )
    async with services.db.sessions() as session:
        await object_to_an(session, rotated, clock)
    assert await suppressed_flags(services) == [False]  # no hash of the contact matches yet
    async with services.db.sessions() as session:
        assert await sync_contact_hashes(session, rotated) == 1
        await session.commit()
    assert await suppressed_flags(services) == [True]
    campaign_id = await campaign(app_client, keys, "promotions", TEA)
    assert (await why(app_client, keys, contact_id, campaign_id))["reason"] == "suppressed"
    await profile_matches_a_rebuild(services)


async def test_c16_an_objection_during_a_profile_rebuild_is_not_lost(
    app_client, keys, services, clock
):
    """A profile rebuilt (by an ingest of the contact) while an objection to its address
    comes in: the objection waits for the rebuild to commit and then marks the new profile.
    Without the address lock, PostgreSQL's objection would update the old row, find it
    deleted by the rebuild, and leave the rebuilt profile unsuppressed."""
    contact_id = await push(
        app_client, keys, factories.contact(consents=[factories.consent("promotions")])
    )
    async with services.db.sessions() as rebuild, services.db.sessions() as objection:
        await refresh_evidence(rebuild, purchases_of=[contact_id])
        objecting = asyncio.create_task(object_to_an(objection, services.context.hasher, clock))
        await asyncio.sleep(0.5)
        assert not objecting.done()  # it waits for the address
        await rebuild.commit()
        await asyncio.wait_for(objecting, 10)
    assert await suppressed_flags(services) == [True]
    campaign_id = await campaign(app_client, keys, "promotions", TEA)
    assert (await why(app_client, keys, contact_id, campaign_id))["reason"] == "suppressed"


@pytest.mark.parametrize(
    "moment",
    [
        "2026-11-27T10:00:00.999500+00:00",  # SQLite's strftime would round this up a second
        "2026-11-27T10:00:00.999999+00:00",
        "2026-11-27T10:00:00+00:00",
        "2024-02-29T23:59:59.000001+00:00",
        "1969-12-31T23:59:59.500000+00:00",
    ],
)
async def test_c10_order_times_in_the_profile_are_exact_to_the_microsecond(services, moment):
    """The profile keeps order times as microseconds (compared with the window start in the
    audience query, C10): the database's conversion equals Python's, on both backends."""
    when = datetime.fromisoformat(moment)
    async with services.db.sessions() as session:
        stored = (
            await session.execute(sa.select(epoch_us(sa.literal(when, UTCDateTime()))))
        ).scalar()
    assert stored == as_epoch_us(when)
