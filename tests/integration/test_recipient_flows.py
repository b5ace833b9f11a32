"""Recipients as mailbox providers and people act: RFC 8058 one-click from a received mail,
the unsubscribe page, preferences, double opt-in, the mailto listener (C5, C13-C15, C22,
C26-C28, C31, C35). Real SMTP (aiosmtpd), real HTTP, SQLite and PostgreSQL."""

from __future__ import annotations

import re

import aiosmtplib
import pytest
import sqlalchemy as sa

from campaigns.audience.audience import load_target, materialise
from campaigns.models import ConsentEvent, Delivery, InboundMessage, Suppression
from campaigns.objections import Addressee, object_to_delivery
from campaigns.sending.campaigns import delivery_recipients
from campaigns.sending.ledger import claim_batch
from campaigns.suppression.entries import suppress, suppressed_among
from campaigns.tokens import Kind
from mailer.delivery.compose import CampaignComposer, CampaignInfo, recipient_of
from tests import factories
from tests.integration.test_audience_scenarios import campaign
from tests.integration.test_dispatch import fire, new_campaign, statuses
from tests.smtp import free_port

pytestmark = pytest.mark.integration


async def mail_campaign_to(app_client, keys, services, smtp, email="an@example.be", locale="nl"):
    """Push a consenting contact, materialise a campaign, compose and send its mail through
    the real SMTP server; return the received message."""
    await app_client.post(
        "/api/v1/contacts",
        headers=keys["shop"],
        json=factories.contact(email, locale=locale, consents=[factories.consent()]),
    )
    created = (
        await app_client.post("/api/v1/campaigns", json=campaign(), headers=keys["marketer"])
    ).json()
    async with services.db.sessions() as session:
        _, target = await load_target(session, created["id"])
        await materialise(session, target, services.context)
        await session.commit()
        ids = (await session.execute(sa.select(Delivery.id))).scalars().all()
        (row,) = await delivery_recipients(session, ids)
    settings = services.settings
    composer = CampaignComposer(
        CampaignInfo(created["id"], "Test", "newsletter", "Nieuws", "newsletter.html"),
        sender=settings.business.sender,
        public_url=settings.public_url,
        templates_dir=settings.templates_dir,
        signer=services.signer,
        clock=services.context.clock,
    )
    await services.transport.send(composer.compose(recipient_of(row)))
    (received,) = await smtp.wait_for(1)
    smtp.received.clear()
    return received.message, created["id"]


def one_click_url(message) -> str:
    https, mailto = (part.strip(" <>") for part in message["List-Unsubscribe"].split(","))
    assert https.startswith("https://") and mailto.startswith("mailto:")
    return https.removeprefix("https://mailer.example.test")


async def suppressed(services, email="an@example.be") -> bool:
    async with services.db.sessions() as session:
        return bool(await suppressed_among(session, [email], services.context.hasher))


async def test_c13_c26_one_click_urlencoded_without_cookies(app_client, keys, services, smtp):
    message, campaign_id = await mail_campaign_to(app_client, keys, services, smtp)
    path = one_click_url(message)
    app_client.cookies.clear()
    response = await app_client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code in (200, 202)
    assert not response.is_redirect and "set-cookie" not in response.headers
    assert await suppressed(services)  # committed before the answer
    async with services.db.sessions() as session:
        entry = (await session.execute(sa.select(Suppression))).scalar_one()
    assert (entry.reason, entry.channel, entry.campaign_id) == (
        "unsubscribe",
        "one_click",
        campaign_id,
    )  # C14
    (ack,) = await smtp.wait_for(1)  # C15: one acknowledgement, no advertising
    assert ack.rcpt_tos == ["an@example.be"]
    assert "List-Unsubscribe" not in ack.message and "Reclame" not in ack.data.decode()
    again = await app_client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert again.status_code == 200
    detail = await app_client.get(f"/api/v1/campaigns/{campaign_id}", headers=keys["marketer"])
    assert detail.json()["counts"]["unsubscribed"] == 1
    assert len(smtp.received) == 1  # no second acknowledgement for the same opt-out


async def test_c13_c15_a_token_posted_many_times_at_once_is_acknowledged_once(
    app_client, keys, services, smtp
):
    """A provider retrying, all posts at once: every answer is 200, the address is
    suppressed, and it is acknowledged once with one withdrawal per purpose (on PostgreSQL
    two posts may both record an entry; only the earliest draws consequences)."""
    import asyncio

    message, _ = await mail_campaign_to(app_client, keys, services, smtp)
    path = one_click_url(message)
    answers = await asyncio.gather(
        *(
            app_client.post(
                path,
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            for _ in range(8)
        )
    )
    assert {answer.status_code for answer in answers} == {200}
    assert await services.objections.left_over() == 0
    async with services.db.sessions() as session:
        entries = (await session.execute(sa.select(Suppression))).scalars().all()
        withdrawals = (
            (await session.execute(sa.select(ConsentEvent).where(ConsentEvent.granted.is_(False))))
            .scalars()
            .all()
        )
    assert entries and not any(entry.follow_up_due for entry in entries)
    purposes = services.context.config.marketing.purposes
    assert sorted(w.purpose for w in withdrawals) == sorted(purposes)
    (ack,) = await smtp.wait_for(1)
    assert ack.rcpt_tos == ["an@example.be"] and len(smtp.received) == 1


async def test_c15_two_entries_of_one_address_at_once_draw_one_acknowledgement(
    app_client, keys, services, smtp
):
    """The race made deterministic: a second due entry of the address, as two processes
    taking two objections at the same moment would leave. The earliest is followed up."""
    message, campaign_id = await mail_campaign_to(app_client, keys, services, smtp)
    token = one_click_url(message).rsplit("/", 1)[1]
    delivery_id = services.signer.read_delivery(Kind.UNSUBSCRIBE, token)
    await services.db.transaction(
        lambda s: object_to_delivery(s, delivery_id, channel="one_click", ctx=services.context)
    )
    async with services.db.sessions() as session:
        (first,) = (await session.execute(sa.select(Suppression))).scalars().all()
        session.add(
            Suppression(
                address_hash=first.address_hash,
                key_id=first.key_id,
                reason="unsubscribe",
                channel="mailto",
                campaign_id=campaign_id,
                created_at=first.created_at,
                follow_up_due=True,
            )
        )
        await session.commit()
    assert await services.objections.follow_up() == 2
    (ack,) = await smtp.wait_for(1)
    assert ack.rcpt_tos == ["an@example.be"] and len(smtp.received) == 1
    async with services.db.sessions() as session:
        withdrawals = (
            (await session.execute(sa.select(ConsentEvent).where(ConsentEvent.granted.is_(False))))
            .scalars()
            .all()
        )
    assert {w.channel for w in withdrawals} == {"one_click"}  # the earliest's


async def test_c13_one_click_stops_the_persons_open_deliveries_with_the_answer(
    app_client, keys, services, smtp
):
    message, _ = await mail_campaign_to(app_client, keys, services, smtp)
    queued = await new_campaign(services)
    await fire(services, queued)
    assert await statuses(services, queued) == {"queued": 1}
    answer = await app_client.post(
        one_click_url(message),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200 and await suppressed(services)
    assert await statuses(services, queued) == {"skipped": 1}


async def test_c13_one_click_holds_for_a_contact_without_a_hash_under_the_signing_key(
    app_client, keys, services, smtp
):
    """The one-statement path reads the address's hash from `contact_hash`; a contact that
    has none under the signing key (hashes not yet synced after a secret was added) takes
    the general path, which hashes the address itself and stores its hashes, so the gate
    and the follow-up find the contact (withdrawals, the acknowledgement)."""
    from campaigns.models import ContactHash

    message, _ = await mail_campaign_to(app_client, keys, services, smtp)
    async with services.db.sessions() as session:
        await session.execute(sa.delete(ContactHash))
        await session.commit()
    answer = await app_client.post(
        one_click_url(message),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200 and await suppressed(services)
    (ack,) = await smtp.wait_for(1)
    assert ack.rcpt_tos == ["an@example.be"]


async def test_c26_one_click_multipart(app_client, keys, services, smtp):
    message, _ = await mail_campaign_to(app_client, keys, services, smtp)
    response = await app_client.post(
        one_click_url(message), files={"List-Unsubscribe": (None, "One-Click")}
    )
    assert response.status_code == 200
    assert await suppressed(services)


async def test_c27_get_shows_a_button_and_changes_nothing(app_client, keys, services, smtp):
    message, _ = await mail_campaign_to(app_client, keys, services, smtp)
    page = await app_client.get(one_click_url(message))
    assert page.status_code == 200
    assert '<form method="post"' in page.text and "<button" in page.text
    assert not await suppressed(services)
    button = await app_client.post(
        one_click_url(message), data={"List-Unsubscribe": "One-Click", "source": "page"}
    )
    assert button.status_code == 200
    async with services.db.sessions() as session:
        entry = (await session.execute(sa.select(Suppression))).scalar_one()
    assert entry.channel == "unsubscribe_page"


async def test_c28_forged_and_tampered_tokens_change_nothing_and_look_the_same(
    app_client, keys, services, smtp
):
    message, _ = await mail_campaign_to(app_client, keys, services, smtp)
    path = one_click_url(message)
    token = path.rsplit("/", 1)[1]
    tampered = token[:-1] + ("a" if token[-1] != "a" else "b")
    forged = services.signer.delivery_token(Kind.UNSUBSCRIBE, 999_999)  # no such delivery
    answers = []
    for candidate in (tampered, "nonsense", forged):
        response = await app_client.post(
            f"/u/{candidate}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        answers.append((response.status_code, response.text))
    assert not await suppressed(services)
    real = await app_client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert {a for a in answers} == {(real.status_code, real.text)}


async def test_c31_c35_preferences_per_purpose_and_all_marketing(app_client, keys, services, smtp):
    message, _ = await mail_campaign_to(app_client, keys, services, smtp)
    html = message.get_body(("html",)).get_content()
    path = re.search(r'href="https://mailer\.example\.test(/p/[a-z0-9]+)"', html).group(1)
    page = await app_client.get(path)
    assert page.status_code == 200
    assert 'value="newsletter" checked' in page.text and 'value="tracking"' in page.text
    saved = await app_client.post(path, data={"purpose": ["promotions", "tracking"]})
    assert saved.status_code == 200
    async with services.db.sessions() as session:
        events = (
            await session.execute(
                sa.select(
                    ConsentEvent.purpose,
                    ConsentEvent.granted,
                    ConsentEvent.channel,
                    ConsentEvent.valid,
                ).order_by(ConsentEvent.id)
            )
        ).all()
    assert [tuple(e) for e in events[1:]] == [
        ("newsletter", False, "preference_center", True),
        ("promotions", True, "preference_center", True),
        ("tracking", True, "preference_center", True),
    ]
    assert 'value="tracking" checked' in (await app_client.get(path)).text
    assert len(await smtp.wait_for(1)) == 1  # a withdrawal is acknowledged too
    stop = await app_client.post(path, data={"stop_all": "1"})
    assert stop.status_code == 200 and await suppressed(services)


async def test_c5_double_opt_in(app_client, keys, services, smtp):
    body = {
        "email": "new@example.be",
        "name": "Nieuw",
        "locale": "fr",
        "purposes": ["newsletter"],
        "wording": "Oui, envoyez-moi la newsletter",
        "wording_version": "2026-02",
        "url": "https://shop.example.be/nieuwsbrief",
    }
    response = await app_client.post("/api/v1/signups", json=body, headers=keys["shop"])
    assert response.status_code == 202
    (request,) = await smtp.wait_for(1)
    text = request.message.get_body(("plain",)).get_content()
    assert "Confirmez" in text and "List-Unsubscribe" not in request.message
    assert "<img" not in request.data.decode()  # no tracking in the confirmation mail
    link = re.search(r"https://mailer\.example\.test(/confirm/[a-z0-9]+)", text).group(1)
    page = await app_client.get(link)  # C27-like: a GET confirms nothing
    assert page.status_code == 200 and "<button" in page.text
    contacts = await app_client.get("/api/v1/campaigns", headers=keys["marketer"])
    assert contacts.status_code == 200
    async with services.db.sessions() as session:
        assert (await session.execute(sa.select(sa.func.count(ConsentEvent.id)))).scalar() == 0
    confirmed = await app_client.post(link)
    assert confirmed.status_code == 200
    async with services.db.sessions() as session:
        event = (await session.execute(sa.select(ConsentEvent))).scalar_one()
    assert (event.capture_method, event.valid, event.url) == (
        "double_opt_in",
        True,
        "https://shop.example.be/nieuwsbrief",
    )
    assert event.confirmed_at is not None and event.wording_version == "2026-02"
    assert (await app_client.post(link)).status_code == 200  # idempotent
    async with services.db.sessions() as session:
        assert (await session.execute(sa.select(sa.func.count(ConsentEvent.id)))).scalar() == 1


@pytest.mark.parametrize("offered", [True, False])
async def test_c5_double_opt_in_request_to_a_utf8_address(app_client, keys, smtp, offered, caplog):
    """The confirmation goes over SMTPUTF8 where the relay offers it; where it does not, the
    sign-up is still answered 202 and nothing is sent (the failure is logged, not raised)."""
    smtp.smtputf8 = offered
    body = {
        "email": "José@Bücher.be",
        "purposes": ["newsletter"],
        "wording": "Ja",
        "wording_version": "1",
        "url": "https://shop.example.be/form",
    }
    response = await app_client.post("/api/v1/signups", json=body, headers=keys["shop"])
    assert response.status_code == 202
    if not offered:
        assert "service mail not sent: SMTPNotSupported" in caplog.messages
        assert smtp.received == []
        return
    (request,) = await smtp.wait_for(1)
    assert request.rcpt_tos == ["josé@bücher.be"] and "SMTPUTF8" in request.mail_options
    assert "\r\nTo: josé@bücher.be\r\n".encode() in request.data


async def test_c22_fresh_double_opt_in_lifts_an_unsubscribe_only(
    app_client, keys, services, smtp, clock
):
    async with services.db.sessions() as session:
        await suppress(
            session,
            "back@example.be",
            reason="unsubscribe",
            channel="one_click",
            clock=clock,
            hasher=services.context.hasher,
        )
        await suppress(
            session,
            "angry@example.be",
            reason="complaint",
            channel="arf",
            clock=clock,
            hasher=services.context.hasher,
        )
        await session.commit()
    body = {
        "purposes": ["newsletter"],
        "wording": "Ja",
        "wording_version": "1",
        "url": "https://shop.example.be/form",
    }
    for email in ("back@example.be", "angry@example.be"):
        response = await app_client.post(
            "/api/v1/signups", json={**body, "email": email}, headers=keys["shop"]
        )
        assert response.status_code == 202  # the same answer either way
    (request,) = await smtp.wait_for(1)
    assert request.rcpt_tos == ["back@example.be"]  # never mail a complainer again
    link = re.search(r"/confirm/[a-z0-9]+", request.message.get_body(("plain",)).get_content())
    await app_client.post(link.group(0))
    assert not await suppressed(services, "back@example.be")
    assert await suppressed(services, "angry@example.be")


async def test_signup_validation(app_client, keys):
    response = await app_client.post(
        "/api/v1/signups",
        headers=keys["shop"],
        json={
            "email": "x@example.be",
            "purposes": ["astrology"],
            "wording": "w",
            "wording_version": "1",
            "url": "https://shop.example.be",
        },
    )
    assert response.status_code == 422 and response.json()["extra"]["field"] == "purposes"


@pytest.fixture
def inbound_settings(settings):
    import dataclasses

    return dataclasses.replace(settings, inbound_port=free_port())


async def test_c14_c20_mailto_unsubscribe_and_review_queue(
    inbound_settings, clock, services, smtp, keys
):
    from litestar.testing import AsyncTestClient

    from mailer.app import create_app

    app = create_app(inbound_settings, clock=clock)
    async with AsyncTestClient(app=app, base_url="https://mailer.example.test") as client:
        message, _ = await mail_campaign_to(client, keys, services, smtp)
        mailto = message["List-Unsubscribe"].split(",")[1].strip(" <>").removeprefix("mailto:")
        address = mailto.split("?")[0]
        port = inbound_settings.inbound_port
        await aiosmtplib.send(
            b"Subject: unsubscribe\r\n\r\nplease\r\n",
            sender="an@example.be",
            recipients=[address],
            hostname="127.0.0.1",
            port=port,
        )
        assert await suppressed(services)
        async with services.db.sessions() as session:
            entry = (await session.execute(sa.select(Suppression))).scalar_one()
        assert entry.channel == "mailto"
        await smtp.wait_for(1)  # acknowledged
        forged = "unsubscribe+" + "a" * 40 + "@ollekebolleke.be"
        await aiosmtplib.send(
            b"Subject: x\r\n\r\nx\r\n",
            sender="x@example.be",
            recipients=[forged, "bounces+abc@ollekebolleke.be"],
            hostname="127.0.0.1",
            port=port,
        )
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await aiosmtplib.send(
                b"x",
                sender="x@example.be",
                recipients=["x@elsewhere.example"],
                hostname="127.0.0.1",
                port=port,
            )
    async with services.db.sessions() as session:
        kept = (await session.execute(sa.select(InboundMessage.state, InboundMessage.rule))).all()
    assert sorted(kept) == [
        ("review", "forged or unknown token"),
        ("review", "unknown unsubscribe token"),
    ]


async def test_c22_c31_a_fresh_opt_in_restores_only_what_it_confirms(
    app_client, keys, services, smtp, clock
):
    """An unsubscribe withdraws every purpose in the ledger; the later double opt-in for the
    newsletter lifts the suppression and brings back the newsletter only."""
    from datetime import timedelta

    message, _ = await mail_campaign_to(app_client, keys, services, smtp)
    contact = (
        await app_client.post(
            "/api/v1/contacts",
            headers=keys["shop"],
            json=factories.contact(consents=[factories.consent("promotions")]),
        )
    ).json()
    assert {b["purpose"] for b in contact["bases"]} == {"newsletter", "promotions"}
    await app_client.post(one_click_url(message), data={"List-Unsubscribe": "One-Click"})
    await smtp.wait_for(1)
    smtp.received.clear()
    clock.advance(timedelta(days=1))
    await app_client.post(
        "/api/v1/signups",
        headers=keys["shop"],
        json={
            "email": "an@example.be",
            "purposes": ["newsletter"],
            "wording": "Ja",
            "wording_version": "3",
            "url": "https://shop.example.be/form",
        },
    )
    (request,) = await smtp.wait_for(1)
    link = re.search(r"/confirm/[a-z0-9]+", request.message.get_body(("plain",)).get_content())
    await app_client.post(link.group(0))
    detail = await app_client.get(f"/api/v1/contacts/{contact['id']}", headers=keys["marketer"])
    assert detail.json()["suppressed"] is False
    assert [b["purpose"] for b in detail.json()["bases"]] == ["newsletter"]


@pytest.mark.parametrize("email", ["an@example.be", "josé@bücher.be"])
async def test_c25_dkim_signature_survives_a_round_trip_through_smtp(services, smtp, email):
    """Signed by the composer, sent over real SMTP, verified on the bytes the server got: by
    the service mails' transport and by the dispatcher's pool, over SMTPUTF8 for a UTF-8
    address (its To header raw UTF-8, RFC 6532)."""
    import dkim

    from mailer.delivery.dkim import DkimSigner
    from mailer.delivery.footer import MailBasis
    from tests.unit.test_compose import CONSENT, dns_for, rsa_key

    private, record = rsa_key()
    settings = services.settings
    composer = CampaignComposer(
        CampaignInfo("c" * 32, "Test", "newsletter", "Nieuws", "newsletter.html"),
        sender=settings.business.sender,
        public_url=settings.public_url,
        templates_dir=settings.templates_dir,
        signer=services.signer,
        clock=services.context.clock,
        dkim=DkimSigner("s1", "ollekebolleke.be", private),
    )
    from mailer.delivery.compose import Recipient
    from mailer.delivery.pool import SmtpPool

    recipient = Recipient(7, "d" * 32, email, "An", "nl", CONSENT)
    assert isinstance(recipient.basis, MailBasis)
    composed = composer.compose(recipient)
    assert composed.smtputf8 is not email.isascii()
    await services.transport.send(composed)
    pool = SmtpPool(settings, 1)
    try:
        (outcome,) = await pool.send_all([(7, composed)])
    finally:
        await pool.close()
    assert outcome.kind == "sent"
    received = await smtp.wait_for(2)
    for message in received:
        assert message.rcpt_tos == [composed.recipient] and message.data == composed.data
        assert ("SMTPUTF8" in message.mail_options) is composed.smtputf8
        assert dkim.verify(message.data, dnsfunc=dns_for(record))


async def test_c15_no_restart_or_relay_failure_loses_an_acknowledgement(
    app_client, keys, services, smtp, clock
):
    """The acknowledgement is stored with the objection: if the relay refuses it right after
    the answer, or the process stops before sending it, a worker sends it later, once."""
    from campaigns.acknowledgements import LEASE
    from campaigns.models import Acknowledgement

    message, _ = await mail_campaign_to(app_client, keys, services, smtp)
    smtp.received.clear()
    smtp.mail_replies = ["421 4.3.2 try later"] * 3  # the relay down when the answer goes
    answered = await app_client.post(
        one_click_url(message),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answered.status_code == 200 and await suppressed(services)
    assert smtp.received == []
    acknowledger = services.acknowledger
    assert await acknowledger.send() == 0  # claimed by the failed sender: its lease holds
    clock.advance(LEASE + LEASE / 2)  # the worker's next round after the lease
    smtp.mail_replies = []
    assert await acknowledger.send() == 1
    (ack,) = await smtp.wait_for(1)
    assert ack.rcpt_tos == ["an@example.be"]
    assert await acknowledger.send() == 0  # once
    async with services.db.sessions() as session:
        (row,) = (await session.execute(sa.select(Acknowledgement))).scalars().all()
    assert row.sent_at is not None and row.attempts == 2


async def test_c15_a_batch_of_acknowledgements_goes_over_one_connection(services, smtp):
    """A refused one fails alone; a lost connection leaves the rest for a later round."""
    people = [Addressee(f"{who}@example.be", None, "nl") for who in ("a", "b", "c")]
    smtp.refuse = {"b@example.be": "550 5.1.1 no such user"}
    assert await services.notices.acknowledge(people) == [True, False, True]
    assert smtp.greetings == 1
    received = await smtp.wait_for(2)
    assert sorted(r.rcpt_tos[0] for r in received) == ["a@example.be", "c@example.be"]
    smtp.reset()
    smtp.drop_rcpt = 1
    assert await services.notices.acknowledge(people) == [False, False, False]


async def test_c13_c15_c31_an_objection_whose_process_stopped_is_followed_up_by_the_worker(
    app_client, keys, services, smtp
):
    """The answer commits only the entry; the process stops before the follow-up. The address
    is not mailed meanwhile (the claim reads the list, not the stale flag), and the worker
    draws the rest once: the withdrawals, the flag, one acknowledgement."""
    from campaigns.models import Acknowledgement, ConsentEvent, MarketingProfile

    message, _ = await mail_campaign_to(app_client, keys, services, smtp)
    smtp.received.clear()
    token = one_click_url(message).rsplit("/", 1)[1]
    delivery_id = services.signer.read_delivery(Kind.UNSUBSCRIBE, token)
    # What the POST commits, and then the process is gone before its background task.
    await services.db.transaction(
        lambda s: object_to_delivery(s, delivery_id, channel="one_click", ctx=services.context)
    )
    assert await suppressed(services) and smtp.received == []
    async with services.db.sessions() as session:
        (profile,) = (await session.execute(sa.select(MarketingProfile))).scalars().all()
        assert profile.suppressed is False  # the follow-up is still due
    # A campaign materialised now (from the stale flag) still sends nobody: the claim asks
    # the list itself.
    again = await new_campaign(services)
    run = await fire(services, again)
    assert await statuses(services, again) == {"queued": 1}
    claim = await services.db.transaction(
        lambda s: claim_batch(s, again, run, services.context, 10)
    )
    assert claim.ids == [] and await statuses(services, again) == {"skipped": 1}

    worker = services.worker()
    await worker.start()
    try:
        (ack,) = await smtp.wait_for(1, within=15)
    finally:
        await worker.stop(drain_seconds=1)
    assert ack.rcpt_tos == ["an@example.be"]
    async with services.db.sessions() as session:
        (profile,) = (await session.execute(sa.select(MarketingProfile))).scalars().all()
        withdrawals = (
            (await session.execute(sa.select(ConsentEvent).where(ConsentEvent.granted.is_(False))))
            .scalars()
            .all()
        )
        acks = (await session.execute(sa.select(Acknowledgement))).scalars().all()
    assert profile.suppressed is True
    assert {(w.purpose, w.channel) for w in withdrawals} == {
        (p, "one_click") for p in services.context.config.marketing.purposes
    }
    assert len(acks) == 1 and acks[0].sent_at is not None
    assert await services.objections.left_over() == 0  # nothing twice
