"""Campaign drafts, materialised audiences, and the suppression list (C12-C14, C16, C21-C22)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from campaigns.audience.audience import load_target, materialise
from campaigns.audience.eligibility import AudienceRules, audience_query
from campaigns.context import Context
from campaigns.evidence.contacts import ingest_contacts
from campaigns.evidence.inputs import ContactIn
from campaigns.models import ContactHash, Delivery
from campaigns.suppression.entries import (
    AddressHasher,
    RetiredSecretError,
    lift_unsubscribe,
    suppress,
    suppressed_among,
    sync_contact_hashes,
)
from tests import factories
from tests.conftest import TEST_SECRET
from tests.integration.test_audience_scenarios import campaign, record_sends

pytestmark = pytest.mark.integration


async def new_campaign(client: Any, keys: dict, **kw: Any) -> dict:
    response = await client.post("/api/v1/campaigns", json=campaign(**kw), headers=keys["marketer"])
    assert response.status_code == 201, response.text
    return response.json()


async def test_campaign_is_created_as_draft_and_listed(app_client, keys):
    created = await new_campaign(app_client, keys, purpose="promotions", categories=["tea"])
    assert created["status"] == "draft"
    assert created["categories"] == ["tea"]
    assert created["counts"]["queued"] == 0
    listed = await app_client.get("/api/v1/campaigns", headers=keys["marketer"])
    assert [c["id"] for c in listed.json()] == [created["id"]]
    detail = await app_client.get(f"/api/v1/campaigns/{created['id']}", headers=keys["admin"])
    assert detail.json()["audience"]["eligible"] == 0


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"purpose": "astrology"}, "purpose"),
        ({"categories": ["tea", "whisky"]}, "categories[1]"),
        ({"template": "missing.html"}, "template"),
        ({"template": "../../etc/passwd"}, "template"),
        ({"subject": "Hi\r\nBcc: x@example.be"}, "subject"),
        ({"locale": "de"}, "locale"),
    ],
)
async def test_bad_campaign_is_422_naming_the_field(app_client, keys, patch, field):
    response = await app_client.post(
        "/api/v1/campaigns", json={**campaign(), **patch}, headers=keys["marketer"]
    )
    assert response.status_code == 422
    assert response.json()["extra"]["field"] == field
    assert (await app_client.get("/api/v1/campaigns", headers=keys["marketer"])).json() == []


async def test_campaign_endpoints_need_marketer_scope(app_client, keys):
    response = await app_client.post("/api/v1/campaigns", json=campaign(), headers=keys["shop"])
    assert response.status_code == 403


async def test_unknown_campaign_or_contact_is_404(app_client, keys):
    assert (
        await app_client.get("/api/v1/campaigns/nope/audience", headers=keys["marketer"])
    ).status_code == 404
    created = await new_campaign(app_client, keys)
    why = await app_client.get(
        "/api/v1/contacts/nope/why", params={"campaign_id": created["id"]}, headers=keys["marketer"]
    )
    assert why.status_code == 404
    missing = await app_client.get("/api/v1/contacts/nope/why", headers=keys["marketer"])
    assert missing.status_code == 422
    assert missing.json()["extra"]["field"] == "campaign_id"


async def push_many(client: Any, keys: dict, bodies: list[dict]) -> list[str]:
    response = await client.post(
        "/api/v1/contacts/batch", json={"contacts": bodies}, headers=keys["shop"]
    )
    results = response.json()["results"]
    assert {r["status"] for r in results} == {201}, results
    return [r["id"] for r in results]


async def test_materialise_records_each_basis_once(app_client, keys, services):
    ids = await push_many(
        app_client,
        keys,
        [
            factories.contact("consent@example.be", consents=[factories.consent("promotions")]),
            factories.contact("buyer@example.be", orders=[factories.order("SO-1")]),
            factories.contact("nobody@example.be"),
            factories.contact("capped@example.be", consents=[factories.consent("promotions")]),
            factories.contact("objector@example.be", consents=[factories.consent("promotions")]),
        ],
    )
    await record_sends(services, ids[3], [1, 2])  # C12
    await app_client.post(
        "/api/v1/suppressions",
        headers=keys["admin"],
        json={"email": "objector@example.be", "reason": "objection", "channel": "phone"},
    )
    created = await new_campaign(app_client, keys, purpose="promotions", categories=["tea"])

    async def run() -> int:
        async with services.db.sessions() as session:
            _, target = await load_target(session, created["id"])
            added = await materialise(session, target, services.context)
            await session.commit()
            return added

    assert await run() == 3
    assert await run() == 0  # idempotent: unique per (campaign, run, contact)
    async with services.db.sessions() as session:
        rows = (
            (
                await session.execute(
                    sa.select(Delivery).where(Delivery.campaign_id == created["id"])
                )
            )
            .scalars()
            .all()
        )
    by_contact = {row.contact_id: row for row in rows}
    assert set(by_contact) == {ids[0], ids[1], ids[3]}
    consent_row, soft_row, capped_row = by_contact[ids[0]], by_contact[ids[1]], by_contact[ids[3]]
    assert (consent_row.status, consent_row.basis_kind) == ("queued", "consent")
    assert consent_row.consent_event_id is not None and consent_row.order_id is None
    assert (soft_row.status, soft_row.basis_kind, soft_row.order_id) == (
        "queued",
        "soft_opt_in",
        "SO-1",
    )
    assert (capped_row.status, capped_row.skip_reason) == ("skipped", "frequency_cap")
    detail = await app_client.get(f"/api/v1/campaigns/{created['id']}", headers=keys["marketer"])
    assert detail.json()["counts"]["queued"] == 2
    assert detail.json()["counts"]["skipped"] == 1


async def test_c14_objection_is_stored_with_reason_channel_and_time(app_client, keys, clock):
    response = await app_client.post(
        "/api/v1/suppressions",
        headers=keys["admin"],
        json={
            "email": "An@Example.be",
            "reason": "objection",
            "channel": "phone",
            "note": "called the shop",
        },
    )
    assert response.status_code == 201
    status = (
        await app_client.get(
            "/api/v1/suppressions", params={"email": "an@example.BE"}, headers=keys["admin"]
        )
    ).json()
    assert status["suppressed"] is True
    assert status["since"] == "2026-11-27T12:00:00Z"
    (entry,) = status["entries"]
    assert (entry["reason"], entry["channel"], entry["note"]) == (
        "objection",
        "phone",
        "called the shop",
    )
    clean = await app_client.get(
        "/api/v1/suppressions", params={"email": "bo@example.be"}, headers=keys["admin"]
    )
    assert clean.json() == {
        "email": "bo@example.be",
        "suppressed": False,
        "since": None,
        "entries": [],
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "nope", "reason": "objection", "channel": "phone"}, "email"),
        ({"email": "a@example.be", "reason": "complaint", "channel": "phone"}, "reason"),
        ({"email": "a@example.be", "reason": "manual"}, "channel"),
    ],
)
async def test_bad_suppression_is_422(app_client, keys, body, field):
    response = await app_client.post("/api/v1/suppressions", json=body, headers=keys["admin"])
    assert response.status_code == 422
    assert response.json()["extra"]["field"] == field


async def test_suppressions_need_admin_scope(app_client, keys):
    for scope in ("shop", "marketer"):
        response = await app_client.get(
            "/api/v1/suppressions", params={"email": "a@example.be"}, headers=keys[scope]
        )
        assert response.status_code == 403


async def test_c22_only_an_unsubscribe_is_lifted_by_a_fresh_opt_in(services, clock):
    hasher = services.context.hasher
    async with services.db.sessions() as session:
        await suppress(
            session,
            "u@example.be",
            reason="unsubscribe",
            channel="one_click",
            clock=clock,
            hasher=hasher,
        )
        await suppress(
            session,
            "c@example.be",
            reason="unsubscribe",
            channel="one_click",
            clock=clock,
            hasher=hasher,
        )
        await suppress(
            session, "c@example.be", reason="complaint", channel="arf", clock=clock, hasher=hasher
        )
        assert await lift_unsubscribe(session, "U@example.be", clock=clock, hasher=hasher)
        assert not await lift_unsubscribe(session, "c@example.be", clock=clock, hasher=hasher)
        assert await suppressed_among(session, ["u@example.be", "c@example.be"], hasher) == {
            "c@example.be"
        }
        await session.commit()


NEW_SECRET = b"a-newer-secret-key-after-rotation-0123456789"


async def test_c21_suppression_survives_secret_rotation(services, clock):
    """Entries made under the old secret still match after a new one is put first, in the
    Python lookup and in the audience query (after the contact hashes are synced)."""
    old = services.context.hasher
    rotated = AddressHasher((NEW_SECRET, TEST_SECRET))
    ctx_old = services.context
    ctx_new = Context(config=ctx_old.config, hasher=rotated, clock=clock)
    item = ContactIn.model_validate(factories.contact(consents=[factories.consent()]))
    async with services.db.sessions() as session:
        await ingest_contacts(session, [(0, item)], ctx_old)
        await suppress(
            session, "an@example.be", reason="complaint", channel="arf", clock=clock, hasher=old
        )
        assert await suppressed_among(session, ["an@example.be"], rotated) == {"an@example.be"}
        assert await sync_contact_hashes(session, rotated) == 1
        assert await sync_contact_hashes(session, rotated) == 0
        keys = (await session.execute(sa.select(ContactHash.key_id))).scalars().all()
        assert sorted(keys) == sorted(rotated.key_ids)
        rules = AudienceRules.for_campaign(
            (await load_target_for(session, services, clock)), ctx_new.config, clock.now()
        )
        (row,) = (await session.execute(audience_query(rules))).all()
        assert row.reason == "suppressed"
        # Retiring the old secret would make its entries match nothing: refused (C21).
        with pytest.raises(RetiredSecretError, match="1 suppression entries"):
            await sync_contact_hashes(session, AddressHasher((NEW_SECRET,)))
        await session.rollback()


async def load_target_for(session: Any, services: Any, clock: Any) -> Any:
    from campaigns.sending.campaigns import create_campaign
    from campaigns.sending.inputs import CampaignIn
    from tests.conftest import ROOT

    created = await create_campaign(
        session,
        CampaignIn.model_validate(campaign()),
        services.context,
        ROOT / "templates" / "email",
    )
    _, target = await load_target(session, created.id)
    return target


async def test_a_template_that_does_not_render_is_refused_with_name_and_line(
    settings, clock, services, keys, tmp_path
):
    import dataclasses

    from litestar.testing import AsyncTestClient

    from mailer.app import create_app
    from tests.conftest import ROOT

    emails = tmp_path / "email"
    emails.mkdir()
    for item in (ROOT / "templates" / "email").iterdir():
        if item.is_file():
            (emails / item.name).write_bytes(item.read_bytes())
    (emails / "broken.html").write_text("<h1>{{ campaign.subject }}</h1>\n<p>{{ coupon }}</p>\n")
    (emails / "broken.txt").write_text("{{ campaign.subject }}\n")
    (tmp_path / "pages").mkdir()
    app = create_app(dataclasses.replace(settings, templates_dir=emails), clock=clock)
    async with AsyncTestClient(app=app) as client:
        response = await client.post(
            "/api/v1/campaigns",
            headers=keys["marketer"],
            json={**campaign(), "template": "broken.html"},
        )
    assert response.status_code == 422
    assert response.json()["extra"]["field"] == "template"
    assert "broken.html, line 2" in response.json()["detail"]
    assert "coupon" in response.json()["detail"]
