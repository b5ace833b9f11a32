"""People's rights end to end, on SQLite and PostgreSQL: the access document (C32) and erasure
(C33), walked from one registry of the tables that hold personal data, and the log of rights
requests (C38)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC

import pytest
import sqlalchemy as sa

from campaigns.models import metadata
from campaigns.rights.registry import HOLDINGS, NOT_PERSONAL
from tests import factories, reports
from tests.conftest import ROOT, TEST_SECRET
from tests.integration.test_returns import decided, mail_report, one_sent

pytestmark = pytest.mark.integration
EMAIL = "p0@example.be"


def test_c32_c33_every_table_is_in_the_registry_or_said_to_hold_no_personal_data():
    registered = {h.table.name for h in HOLDINGS}
    assert not registered & set(NOT_PERSONAL)
    missing = {t.name for t in metadata.sorted_tables} - registered - set(NOT_PERSONAL)
    assert not missing, f"add these tables to campaigns/rights/registry.py: {sorted(missing)}"
    for holding in HOLDINGS:
        assert all(name in holding.table.c for name in holding.fields), holding.table.name
        assert holding.about, f"{holding.table.name}: say what it holds, or why not exported"


async def a_person_with_everything(world, smtp, listener, app_client, keys) -> str:
    """p0: consent, an order, a delivery of a sent campaign, a report on it, a sign-up."""
    _, [(verp, _)] = await one_sent(world, smtp)
    pushed = await app_client.post(
        "/api/v1/contacts",
        json=factories.contact(EMAIL, orders=[factories.order("SO-7")]),
        headers=keys["shop"],
    )
    assert pushed.status_code in (200, 201), pushed.text
    await mail_report(listener[1], verp, reports.dsn(status="4.2.2", action="delayed", verp=verp))
    await decided(listener)
    signed_up = await app_client.post(
        "/api/v1/signups",
        json={
            "email": EMAIL,
            "purposes": ["newsletter"],
            "wording": "Ja, stuur mij de nieuwsbrief",
            "wording_version": "2026-01",
            "url": "https://shop.example.be/nieuwsbrief",
        },
        headers=keys["shop"],
    )
    assert signed_up.status_code == 202, signed_up.text
    return pushed.json()["id"]


async def test_c32_c38_the_export_holds_everything_and_is_logged(
    world, smtp, listener, app_client, keys
):
    contact_id = await a_person_with_everything(world, smtp, listener, app_client, keys)
    url = f"/api/v1/contacts/{contact_id}/export"
    assert (await app_client.get(url, headers=keys["marketer"])).status_code == 403
    response = await app_client.get(url, headers=keys["admin"])
    assert response.status_code == 200, response.text
    document = response.json()
    assert (document["format"], document["version"]) == ("permission-mailer/contact-export", 1)
    assert document["contact"]["email"] == EMAIL
    assert document["contact"]["source_channel"] == "checkout"
    [consent] = document["consent_events"]
    assert consent["wording"] == "Ja, stuur mij de nieuwsbrief" and consent["granted"] is True
    assert [o["id"] for o in document["orders"]] == ["SO-7"]
    assert document["order_categories"] == [{"order_id": "SO-7", "category": "tea"}]
    [delivery] = document["deliveries"]
    assert delivery["status"] == "sent" and delivery["basis_kind"] == "consent"
    assert delivery["consent_event_id"] == consent["id"]
    assert document["campaigns"] == {delivery["campaign_id"]: "c"}
    [report] = document["reports"]
    assert report["verdict"] == "soft" and "Delayed" not in report["raw"][:0]
    assert [s["email"] for s in document["signups"]] == [EMAIL]
    assert document["suppression"] == {"suppressed": False, "since": None, "entries": []}
    assert [(r["kind"], r["channel"]) for r in document["rights_requests"]] == [("export", "api")]
    assert document["rights_requests"][0]["actor"].startswith("key ")
    unknown = await app_client.get("/api/v1/contacts/nobody/export", headers=keys["admin"])
    assert unknown.status_code == 404


async def leftovers(world, contact_id: str) -> list[str]:
    """Every table, every row, every text and binary column: where the person still is."""
    found = []
    async with world.db.sessions() as session:
        for table in metadata.sorted_tables:
            for row in (await session.execute(sa.select(table))).mappings():
                for column, value in row.items():
                    text = (
                        bytes(value).decode("utf-8", "replace")
                        if isinstance(value, bytes | memoryview)
                        else str(value)
                    )
                    if EMAIL in text.lower() or value == contact_id:
                        found.append(f"{table.name}.{column}")
    return found


async def test_c33_c21_c22_erasure_leaves_only_the_suppression_hash(
    world, smtp, listener, app_client, keys
):
    contact_id = await a_person_with_everything(world, smtp, listener, app_client, keys)
    await app_client.get(f"/api/v1/contacts/{contact_id}/export", headers=keys["admin"])
    assert await leftovers(world, contact_id)  # the walk finds the person before
    url = f"/api/v1/contacts/{contact_id}"
    assert (await app_client.delete(url, headers=keys["marketer"])).status_code == 403
    erased = await app_client.delete(url, headers=keys["admin"])
    assert erased.status_code == 204, erased.text
    assert await leftovers(world, contact_id) == []
    async with world.db.sessions() as session:
        entries = (await session.execute(sa.text("SELECT reason, channel FROM suppression"))).all()
        requests = (
            await session.execute(
                sa.text("SELECT kind, channel, contact_id FROM rights_request ORDER BY id")
            )
        ).all()
    assert [tuple(e) for e in entries] == [("erasure", "api")]
    assert [tuple(r) for r in requests] == [("export", "api", None), ("erasure", "api", None)]
    again = await app_client.get(f"{url}/export", headers=keys["admin"])
    assert again.status_code == 404
    assert (await app_client.delete(url, headers=keys["admin"])).status_code == 404
    # The address pushed again: a new contact, and no basis for it (C22).
    pushed = await app_client.post(
        "/api/v1/contacts",
        json=factories.contact(EMAIL, consents=[factories.consent()]),
        headers=keys["shop"],
    )
    assert pushed.status_code == 201, pushed.text
    status = await app_client.get(f"/api/v1/suppressions?email={EMAIL}", headers=keys["admin"])
    assert status.json()["suppressed"] is True
    why = pushed.json()
    assert why["bases"] == [] and any(r["reason"] == "suppressed" for r in why["refused"]), why


async def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m mailer ARGS` as an operator runs it."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mailer", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_c33_the_cli_erases_by_address_and_prints_no_address(
    world, smtp, listener, app_client, keys, settings
):
    contact_id = await a_person_with_everything(world, smtp, listener, app_client, keys)
    env = {
        **os.environ,
        "MAILER_DATABASE_URL": settings.database_url,
        "MAILER_CONFIG": str(ROOT / "mailer.example.toml"),
        "MAILER_SECRET_KEYS": TEST_SECRET.decode(),
        "MAILER_DEV": "1",
    }
    done = await cli(env, "contacts", "erase", EMAIL.upper())
    assert done.returncode == 0, done.stderr
    assert "erased (" in done.stdout and "contact 1" in done.stdout
    assert EMAIL not in (done.stdout + done.stderr).lower()
    assert await leftovers(world, contact_id) == []
    refused = await cli(env, "contacts", "erase", "not an address")
    assert refused.returncode == 2 and "not erased" in refused.stderr
    record = await cli(env, "processing-record")
    assert record.returncode == 0, record.stderr
    dry = await cli(env, "retention", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would go: 0 contacts without basis or activity for 36 months")
    assert record.stdout.startswith("# Record of processing")
    assert "## Retention" in record.stdout and "Olleke Bolleke BV" in record.stdout


async def test_art30_the_record_of_processing_is_the_configuration(app_client, keys, settings):
    url = "/api/v1/processing-record"
    assert (await app_client.get(url, headers=keys["marketer"])).status_code == 403
    record = (await app_client.get(url, headers=keys["admin"])).json()
    business = settings.business
    assert record["controller"]["name"] == business.sender.legal_name
    purposes = [p["purpose"] for p in record["purposes"]]
    assert purposes[: len(business.marketing.purposes)] == list(business.marketing.purposes)
    partner = next(p for p in record["purposes"] if p["purpose"] == "partner_offers")
    assert len(partner["legal_bases"]) == 1  # a third party's offers: consent only (C9)
    retention = record["retention"]
    assert retention["contacts_without_basis_or_activity_months"] == 36
    assert retention["delivery_log_months"] == business.retention.delivery_log_months
    assert len(record["categories_of_data"]) == sum(1 for h in HOLDINGS if h.exported_as)
    assert settings.smtp_host in record["recipients"][0]["who"]


def test_art30_a_changed_configuration_is_a_changed_record(settings):
    from campaigns.rights.record import RelayInfo, as_markdown, processing_record

    changed = dataclasses.replace(
        settings.business,
        retention=dataclasses.replace(settings.business.retention, inactive_contact_months=12),
        marketing=dataclasses.replace(
            settings.business.marketing, purposes=("newsletter", "recipes")
        ),
    )
    text = as_markdown(processing_record(changed, RelayInfo("relay.example.net", "starttls")))
    assert "- contacts without basis or activity months: 12" in text
    assert "**recipes**" in text and "**promotions**" not in text
    assert "relay.example.net" in text and "not DKIM-signed" in text


# ---- retention --------------------------------------------------------------------------------


def _at(moment) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def test_c34_c36_retention_erases_what_outlived_its_purpose_and_keeps_the_rest(
    app_client, keys, services, clock, settings
):
    from campaigns.clock import months_before
    from campaigns.models import Delivery, InboundMessage
    from campaigns.rights.retention import retention_due
    from mailer.scheduler import run_retention

    now = clock.now()
    long_ago = months_before(now, 37)
    clock.set(long_ago)
    pushes = {
        # an order 37 months ago, no consent: no basis, no activity since -> goes
        "gone@example.be": factories.contact(
            "gone@example.be", orders=[factories.order("SO-1", placed_at=_at(long_ago))]
        ),
        # the same, but a consent given last week -> stays
        "fresh@example.be": factories.contact(
            "fresh@example.be", orders=[factories.order("SO-2", placed_at=_at(long_ago))]
        ),
        # a consent of 37 months ago still standing: a basis -> stays
        "standing@example.be": factories.contact(
            "standing@example.be", consents=[factories.consent(captured_at=_at(long_ago))]
        ),
    }
    ids = {}
    for email, body in pushes.items():
        pushed = await app_client.post("/api/v1/contacts", json=body, headers=keys["shop"])
        assert pushed.status_code == 201, pushed.text
        ids[email] = pushed.json()["id"]
    clock.set(now)
    given = factories.consent(captured_at=_at(months_before(now, 0)), email="fresh@example.be")
    assert (
        await app_client.post("/api/v1/consents", json=given, headers=keys["shop"])
    ).status_code == 201
    old, recent = months_before(now, 25), months_before(now, 11)
    report_old, report_recent = months_before(now, 7), months_before(now, 5)
    async with services.db.sessions() as session:
        for n, queued in enumerate((old, recent)):
            session.add(
                Delivery(
                    campaign_id="cmp",
                    run=1 + n,
                    contact_id=ids["standing@example.be"],
                    status="sent",
                    basis_kind="consent",
                    queued_at=queued,
                    sent_at=queued,
                    attempts=1,
                    id=9000 + n,
                )
            )
        for received, state in (
            (report_old, "decided"),
            (report_old, "pending"),
            (report_recent, "decided"),
        ):
            session.add(
                InboundMessage(
                    received_at=received,
                    channel="smtp",
                    recipient="bounces@x",
                    raw=b"r",
                    state=state,
                )
            )
        await session.commit()
    due = await services.db.transaction(lambda s: retention_due(s, services.context))
    assert (due.inactive_contacts, due.old_deliveries, due.old_reports) == (1, 1, 1)
    done = await run_retention(services.db, services.context)
    assert (done.inactive_contacts, done.old_deliveries, done.old_reports) == (1, 1, 1)
    assert not await services.db.transaction(lambda s: retention_due(s, services.context))
    async with services.db.sessions() as session:
        emails = set((await session.execute(sa.text("SELECT email FROM contact"))).scalars())
        kept = list((await session.execute(sa.text("SELECT id FROM delivery"))).scalars())
        states = sorted(
            (await session.execute(sa.text("SELECT state FROM inbound_message"))).scalars()
        )
        entries = (await session.execute(sa.text("SELECT count(*) FROM suppression"))).scalar()
    assert emails == {"fresh@example.be", "standing@example.be"}
    assert kept == [9001] and states == ["decided", "pending"]
    assert entries == 0  # retention is no objection: the person may come back
    again = await app_client.post(
        "/api/v1/contacts",
        json=factories.contact("gone@example.be", consents=[factories.consent()]),
        headers=keys["shop"],
    )
    assert again.json()["bases"], again.json()  # a new consent is a basis again
    worker = services.worker()
    await worker.start()
    try:
        job = worker.scheduler.get_job("retention")  # and it runs by itself, daily
        assert job is not None and str(job.trigger).startswith("cron[hour='3', minute='30'")
    finally:
        await worker.stop(drain_seconds=1)


# ---- the person's own rights, from the preference page -----------------------------------------


async def test_c38_the_person_gets_their_data_by_mail_and_deletes_it_with_a_confirming_post(
    world, smtp, listener, app_client, keys
):
    from campaigns.tokens import Kind

    contact_id = await a_person_with_everything(world, smtp, listener, app_client, keys)
    smtp.received.clear()
    token = world.signer.hex_token(Kind.PREFERENCES, contact_id)
    page = await app_client.get(f"/p/{token}")
    assert "Mail mij mijn gegevens" in page.text and f'href="/p/{token}/erase"' in page.text

    sent = await app_client.post(f"/p/{token}/export")
    assert sent.status_code == 200
    assert "We sturen al je gegevens naar je e-mailadres" in sent.text
    assert EMAIL not in sent.text and "consent_events" not in sent.text  # never on the page
    (mail,) = await smtp.wait_for(1)
    assert mail.rcpt_tos == [EMAIL]
    [attachment] = list(mail.message.iter_attachments())
    assert attachment.get_filename() == "my-data.json"
    document = json.loads(attachment.get_content())
    assert document["contact"]["email"] == EMAIL and document["consent_events"]
    again = await app_client.post(f"/p/{token}/export")
    assert "vandaag al" in again.text  # at most one a day: a forwarded link is no mail bomb
    await asyncio.sleep(0.2)
    assert len(smtp.received) == 1

    asked = await app_client.get(f"/p/{token}/erase")
    assert "Alles wissen" in asked.text and 'method="post"' in asked.text
    assert await leftovers(world, contact_id)  # a GET changes nothing
    erased = await app_client.post(f"/p/{token}/erase")
    assert erased.status_code == 200 and "Je gegevens zijn gewist" in erased.text
    assert await leftovers(world, contact_id) == []
    async with world.db.sessions() as session:
        requests = (
            await session.execute(
                sa.text("SELECT kind, channel, actor, contact_id FROM rights_request ORDER BY id")
            )
        ).all()
        entries = (await session.execute(sa.text("SELECT reason, channel FROM suppression"))).all()
    assert [tuple(r) for r in requests] == [
        ("export", "page", "the person", None),
        ("erasure", "page", "the person", None),
    ]
    assert [tuple(e) for e in entries] == [("erasure", "page")]
    gone = await app_client.get(f"/p/{token}")
    assert "Deze link werkt niet" in gone.text


async def test_c34_c7_c24_retention_judges_basis_activity_and_dates_as_the_rules_do(
    app_client, keys, services, clock
):
    """A suppressed contact has no basis though its consent stands; a sign-up waiting for its
    confirmation, not a refused consent dated in 2099, is activity; who used the opt-out at an
    order keeps an unsubscribe entry (C7); a delivery counts from when it was sent (C24); a
    sign-up never confirmed goes after its days."""
    from datetime import timedelta

    from campaigns.clock import months_before
    from campaigns.models import ConsentEvent, Delivery, Signup
    from mailer.scheduler import run_retention

    now = clock.now()
    long_ago = months_before(now, 37)
    clock.set(long_ago)
    bodies = {
        "bounced@example.be": factories.contact(
            "bounced@example.be", consents=[factories.consent(captured_at=_at(long_ago))]
        ),
        "waiting@example.be": factories.contact(
            "waiting@example.be", orders=[factories.order("SO-3", placed_at=_at(long_ago))]
        ),
        "future@example.be": factories.contact(
            "future@example.be", orders=[factories.order("SO-4", placed_at=_at(long_ago))]
        ),
        "optout@example.be": factories.contact(
            "optout@example.be",
            orders=[factories.order("SO-5", placed_at=_at(long_ago), marketing_opt_out_used=True)],
        ),
    }
    ids = {}
    for email, body in bodies.items():
        pushed = await app_client.post("/api/v1/contacts", json=body, headers=keys["shop"])
        assert pushed.status_code == 201, pushed.text
        ids[email] = pushed.json()["id"]
    clock.set(now)
    hard = {"email": "bounced@example.be", "reason": "manual", "channel": "test",
            "note": "550 5.1.1 <bounced@example.be>: no such user"}  # fmt: skip
    assert (
        await app_client.post("/api/v1/suppressions", json=hard, headers=keys["admin"])
    ).status_code in (200, 201)
    async with services.db.sessions() as session:
        note = (await session.execute(sa.text("SELECT note FROM suppression"))).scalar_one()
        assert note == "550 5.1.1 <address> no such user"  # written without the address
        session.add(
            Signup(id="s" * 32, email="waiting@example.be", purposes="newsletter", wording="Ja",
                   wording_version="1", url="https://shop.example.be", created_at=now)
        )  # fmt: skip
        for n, days in enumerate((31, 10)):
            session.add(
                Signup(id=f"{n}" * 32, email=f"nobody{n}@example.be", purposes="newsletter",
                       wording="Ja", wording_version="1", url="https://shop.example.be",
                       created_at=now - timedelta(days=days))
            )  # fmt: skip
        session.add(
            ConsentEvent(contact_id=ids["future@example.be"], purpose="newsletter",
                         granted=True, captured_at=now.replace(year=2099), valid=False,
                         capture_method="checkbox", recorded_at=now, fingerprint="f" * 64)
        )  # fmt: skip
        session.add(
            Delivery(campaign_id="cmp", run=1, contact_id=ids["waiting@example.be"],
                     status="sent", basis_kind="soft_opt_in", attempts=1, id=9100,
                     queued_at=months_before(now, 26), sent_at=months_before(now, 11))
        )  # fmt: skip
        await session.commit()
    done = await run_retention(services.db, services.context)
    assert (done.inactive_contacts, done.unconfirmed_signups) == (3, 1)
    async with services.db.sessions() as session:
        emails = set((await session.execute(sa.text("SELECT email FROM contact"))).scalars())
        signups = set((await session.execute(sa.text("SELECT email FROM signup"))).scalars())
        deliveries = list((await session.execute(sa.text("SELECT id FROM delivery"))).scalars())
        entries = sorted(
            tuple(row)
            for row in (
                await session.execute(sa.text("SELECT reason, channel, note FROM suppression"))
            ).all()
        )
    assert emails == {"waiting@example.be"}
    assert signups == {"waiting@example.be", "nobody1@example.be"}
    assert deliveries == [9100]  # sent 11 months ago: its unsubscribe link still works
    assert entries == [  # only hash, reason, channel and date of the erased stay (C21)
        ("manual", "test", None),
        ("unsubscribe", "retention", None),
    ]


async def test_c38_the_page_names_each_basis_and_ends_the_customer_exception_alone(
    world, smtp, app_client, keys
):
    """A customer who also agreed to the newsletter: the page says both bases in words; the
    customer exception is switched off alone (an objection, acknowledged); the consent stays,
    and a promotion about tea no longer reaches them (`soft_opt_in_ended`), whatever they buy."""
    from campaigns.tokens import Kind
    from tests.integration.test_audience_scenarios import campaign

    person = factories.contact(
        EMAIL,
        orders=[factories.order("SO-1", categories=["tea", "herbal-tea"])],
        consents=[factories.consent()],
    )
    pushed = await app_client.post("/api/v1/contacts", json=person, headers=keys["shop"])
    contact_id = pushed.json()["id"]
    promotion = (
        await app_client.post(
            "/api/v1/campaigns", json=campaign("promotions", ["tea"]), headers=keys["marketer"]
        )
    ).json()["id"]

    async def why() -> dict:
        url = f"/api/v1/contacts/{contact_id}/why?campaign_id={promotion}"
        return (await app_client.get(url, headers=keys["marketer"])).json()

    assert (await why())["basis"]["kind"] == "soft_opt_in"
    token = world.signer.hex_token(Kind.PREFERENCES, contact_id)
    page = (await app_client.get(f"/p/{token}")).text
    assert "Je gaf hiervoor toestemming op 20-11-2026." in page
    assert (
        "Je krijgt e-mails over kruidenthee en thee omdat je dat op 20-11-2026 bij ons kocht"
        in page
    )
    assert "(tot 20-11-2028)" in page
    assert 'name="soft_opt_in" value="keep" checked' in page
    # Saved with the box still ticked: nothing ends. A form without the switch shown (a basis
    # that appeared after the page was drawn) ends nothing either.
    keep = {"purpose": ["newsletter"], "shown": "soft_opt_in", "soft_opt_in": "keep"}
    await app_client.post(f"/p/{token}", data=keep)
    await app_client.post(f"/p/{token}", data={"purpose": ["newsletter"]})
    assert (await why())["basis"]["kind"] == "soft_opt_in"
    assert smtp.received == []

    ended = await app_client.post(
        f"/p/{token}", data={"purpose": ["newsletter"], "shown": "soft_opt_in"}
    )
    assert ended.status_code == 200
    said = await why()
    assert said["reason"] == "soft_opt_in_ended" and said.get("basis") is None
    (ack,) = await smtp.wait_for(1)  # an opt-out is acknowledged (C15)
    assert ack.rcpt_tos == [EMAIL]
    page = (await app_client.get(f"/p/{token}")).text
    assert "Op 27-11-2026 zette je de e-mails over wat je kocht stop." in page
    assert 'name="soft_opt_in"' not in page
    assert "Je gaf hiervoor toestemming op 20-11-2026." in page  # the consent stands
    # A new order gives no basis again; the newsletter still goes.
    again = factories.contact(EMAIL, orders=[factories.order("SO-2", categories=["tea"])])
    await app_client.post("/api/v1/contacts", json=again, headers=keys["shop"])
    assert (await why())["reason"] == "soft_opt_in_ended"
    newsletter = (
        await app_client.post("/api/v1/campaigns", json=campaign(), headers=keys["marketer"])
    ).json()["id"]
    url = f"/api/v1/contacts/{contact_id}/why?campaign_id={newsletter}"
    assert (await app_client.get(url, headers=keys["marketer"])).json()["eligible"] is True
    # In the export, and gone with an erasure (the registry walk of the erasure test).
    document = (
        await app_client.get(f"/api/v1/contacts/{contact_id}/export", headers=keys["admin"])
    ).json()
    [objection] = document["soft_opt_in_objections"]
    assert objection["channel"] == "preference_center"
    # A right exercised, logged like the others (C38), without the address.
    assert [(r["kind"], r["channel"], r["actor"]) for r in document["rights_requests"]] == [
        ("objection", "page", "the person"),
        ("export", "api", document["rights_requests"][1]["actor"]),
    ]
