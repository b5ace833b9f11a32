"""The return channel end to end: reports mailed to the real inbound listener over SMTP, and
relay events over HTTP, decided by the decision table, on SQLite and PostgreSQL (RULES C13,
C14, C17-C20, C22, C37; DESIGN "The return channel")."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import aiosmtplib
import pytest
import sqlalchemy as sa

from campaigns.models import Campaign, Delivery, InboundMessage, RunDomainCount, Suppression
from campaigns.returns.intake import pending_reports
from campaigns.sending import lifecycle, pauses
from mailer.inbound import start_listener
from mailer.services import Services
from tests import reports
from tests.conftest import ROOT, TEST_SECRET
from tests.integration.conftest import with_business
from tests.integration.test_dispatch import FAST, fire, new_campaign, people, send
from tests.smtp import free_port

pytestmark = pytest.mark.integration
DOMAIN = "ollekebolleke.be"


async def mail_report(port: int, recipient: str, raw: bytes) -> None:
    """As a remote MTA sends a bounce: null sender, one recipient."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as client:
        errors, reply = await client.sendmail("", [recipient], raw)
    assert not errors and reply.startswith("OK"), reply


async def decided(listener) -> None:
    handler, _ = listener
    await asyncio.wait_for(handler.idle(), 10)


async def one_sent(world, smtp, n: int = 1) -> tuple[str, list[tuple[str, str]]]:
    """Send a campaign to n people; (campaign, [(VERP address, Message-ID)] per person)."""
    await people(world, n)
    campaign_id = await new_campaign(world)
    await send(world, campaign_id, await fire(world, campaign_id))
    sent = sorted(smtp.received, key=lambda r: r.rcpt_tos[0])
    smtp.received.clear()
    return campaign_id, [(r.mail_from, r.message["Message-ID"]) for r in sent]


async def entries(world) -> list[tuple[str, str]]:
    async with world.db.sessions() as session:
        rows = await session.execute(
            sa.select(Suppression.reason, Suppression.channel).order_by(Suppression.id)
        )
        return [tuple(row) for row in rows.all()]


async def stored(world) -> list[InboundMessage]:
    async with world.db.sessions() as session:
        rows = await session.execute(sa.select(InboundMessage).order_by(InboundMessage.id))
        return list(rows.scalars())


async def delivery_statuses(world, campaign_id: str) -> Counter[str]:
    async with world.db.sessions() as session:
        rows = await session.execute(
            sa.select(Delivery.status).where(Delivery.campaign_id == campaign_id)
        )
        return Counter(rows.scalars())


async def counts(world) -> dict[str, int]:
    async with world.db.sessions() as session:
        row = (
            await session.execute(
                sa.select(
                    *(
                        sa.func.coalesce(sa.func.sum(getattr(RunDomainCount, f)), 0).label(f)
                        for f in ("messages", "delivered", "hard_bounces", "soft_bounces")
                    ),
                    sa.func.coalesce(sa.func.sum(RunDomainCount.blocks), 0).label("blocks"),
                    sa.func.coalesce(sa.func.sum(RunDomainCount.complaints), 0).label("complaints"),
                )
            )
        ).one()
        return dict(row._mapping)


# ---- bounces ---------------------------------------------------------------------------------


async def test_c17_hard_bounce_dsn_suppresses_the_address(world, smtp, listener):
    campaign_id, [(verp, message_id)] = await one_sent(world, smtp)
    assert verp.startswith("bounces+") and verp.endswith(f"@{DOMAIN}")
    raw = reports.dsn(
        status="5.1.1",
        diagnostic="550 5.1.1 <p0@example.be>: Recipient address rejected: User unknown",
        recipient="alias-of-p0@example.be",  # the report's own field is recorded, not required
        message_id=message_id,
        verp=verp,
    )
    await mail_report(listener[1], verp, raw)
    await decided(listener)
    assert await entries(world) == [("hard_bounce", "bounce")]
    assert await delivery_statuses(world, campaign_id) == {"bounced": 1}
    (report,) = await stored(world)
    assert (report.state, report.verdict, report.status_code) == ("decided", "hard", "5.1.1")
    assert report.reported_recipient == "alias-of-p0@example.be"
    assert "p0@example.be" not in (report.diagnostic or "")  # masked
    assert bytes(report.raw) == raw  # kept as it came
    assert (await counts(world))["hard_bounces"] == 1


async def test_c17_sender_level_refusal_suppresses_nothing_and_counts_a_block(
    world, smtp, listener
):
    campaign_id, [(verp, message_id)] = await one_sent(world, smtp)
    raw = reports.dsn(
        status="5.7.1",
        diagnostic="554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org",
        message_id=message_id,
        verp=verp,
    )
    await mail_report(listener[1], verp, raw)
    await decided(listener)
    assert await entries(world) == []
    assert await delivery_statuses(world, campaign_id) == {"failed": 1}
    assert (await counts(world))["blocks"] == 1


async def weekly_campaigns(world, smtp, clock, n: int) -> list[str]:
    """n campaigns to one person a week apart (the frequency cap allows two a week): the VERP
    address of each mail."""
    await people(world, 1)
    verps = []
    for _week in range(n):
        campaign_id = await new_campaign(world)
        await send(world, campaign_id, await fire(world, campaign_id))
        verps.append(smtp.received[-1].mail_from)
        clock.advance(timedelta(days=8))
    return verps


async def test_c18_soft_bounces_in_a_row_suppress_at_the_limit(world, smtp, listener, clock):
    """Three campaigns a week apart (the frequency cap allows two a week), each soft-bounced;
    the third suppresses (soft_bounce_limit = 3)."""
    verps = await weekly_campaigns(world, smtp, clock, 3)
    for i, verp in enumerate(verps):
        raw = reports.dsn(
            status="4.2.2", action="delayed", diagnostic="452 4.2.2 Mailbox full", verp=verp
        )
        await mail_report(listener[1], verp, raw)
        await decided(listener)
        expected = [("soft_bounce_limit", "bounce")] if i == 2 else []
        assert await entries(world) == expected, i
    assert {r.verdict for r in await stored(world)} == {"soft"}


async def test_c18_a_delivery_between_soft_bounces_starts_the_count_again(
    world, smtp, listener, clock
):
    verps = await weekly_campaigns(world, smtp, clock, 4)
    # soft, (delivered: no report), soft, soft: two in a row, not three
    for verp in (verps[0], verps[2], verps[3]):
        await mail_report(listener[1], verp, reports.dsn(status="4.4.7", verp=verp))
    await decided(listener)
    assert await entries(world) == []


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(reports.auto_reply(), id="auto-reply"),
        pytest.param(
            reports.dsn(status="2.0.0", action="delivered", diagnostic="250 2.0.0 OK"),
            id="success",
        ),
    ],
)
async def test_c18_auto_replies_and_success_reports_change_nothing(world, smtp, listener, raw):
    campaign_id, [(verp, _)] = await one_sent(world, smtp)
    await mail_report(listener[1], verp, raw)
    await decided(listener)
    assert await entries(world) == []
    assert await delivery_statuses(world, campaign_id) == {"sent": 1}
    (report,) = await stored(world)
    assert report.state == "decided" and report.verdict in ("auto_reply", "delivered")


async def test_c17_an_mta_s_own_prose_is_read(world, smtp, listener):
    _, [(verp, _)] = await one_sent(world, smtp)
    raw = reports.qmail("Sorry, no mailbox here by that name. (#5.1.1)")
    await mail_report(listener[1], verp, raw)
    await decided(listener)
    assert await entries(world) == [("hard_bounce", "bounce")]


async def test_c20_long_lines_and_8bit_bytes_are_accepted_and_read(world, smtp, listener):
    _, [(verp, _)] = await one_sent(world, smtp)
    long_line = "X-Amazon-Trace: " + "a" * 1500
    raw = reports.dsn(status="5.1.1", diagnostic="550 5.1.1 user unknown", verp=verp)
    raw = raw.replace(b"\r\n\r\n", f"\r\n{long_line}\r\n\r\n".encode(), 1)
    raw = raw.replace(b"could not be delivered.", "kon niet bezorgd worden: é ü".encode("latin-1"))
    assert max(len(line) for line in raw.split(b"\r\n")) > 1500
    await mail_report(listener[1], verp, raw)
    await decided(listener)
    assert await entries(world) == [("hard_bounce", "bounce")]


async def test_c17_c19_a_burst_is_decided_in_batches_each_report_once(world, smtp, listener):
    """Sixty reports over six connections at once, read in batches by the reader process,
    each decided once: a delivery's hard bounce is counted and suppressed once however many
    reports say so, and so is its complaint; soft bounces of one message are one in a row."""
    _, sent = await one_sent(world, smtp, n=3)
    (hard, _), (complained, _), (soft, _) = sent

    async def connection(k: int) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=listener[1]) as client:
            for i in range(10):
                to, raw = [
                    (hard, reports.dsn(status="5.1.1", verp=hard)),
                    (f"bounces@{DOMAIN}", reports.arf(original_mail_from=complained)),
                    (soft, reports.dsn(status="4.2.2", action="delayed", verp=soft)),
                ][(k + i) % 3]
                await client.sendmail("", [to], raw)

    handler, _ = listener
    handler._reader.apart_from = 5  # this burst is read in the helper process, as a big one
    await asyncio.gather(*(connection(k) for k in range(6)))
    await decided(listener)
    assert handler._reader.helper_pid is not None
    assert sorted(await entries(world)) == [("complaint", "complaint"), ("hard_bounce", "bounce")]
    verdicts = Counter(r.verdict for r in await stored(world))
    assert verdicts == {"hard": 20, "complaint": 20, "soft": 20}
    assert (await counts(world))["hard_bounces"] == 1
    assert (await counts(world))["complaints"] == 1


async def test_c20_a_nul_in_a_reports_field_reaches_no_column(world, smtp, listener):
    """A NUL byte (PostgreSQL text cannot hold one) in a complaint's Feedback-Type: the field
    is read without it, and the report next to it in the batch is decided as well."""
    _, [(verp, message_id)] = await one_sent(world, smtp)
    await mail_report(listener[1], verp, reports.dsn(status="5.1.1", verp=verp))
    weird = reports.arf(feedback_type="not-sp\x00am", message_id=message_id)
    await mail_report(listener[1], f"bounces@{DOMAIN}", weird)
    await decided(listener)
    kept = [(r.verdict, r.rule, r.feedback_type) for r in await stored(world)]
    assert kept == [
        ("hard", "bad destination mailbox", None),
        ("feedback", "feedback (not-spam)", "not-spam"),
    ]
    assert await entries(world) == [("hard_bounce", "bounce")]


async def test_c20_a_report_the_database_refuses_is_set_aside_alone(
    world, smtp, listener, monkeypatch
):
    """A batch the database refuses because of one report is decided report by report: the
    others are decided, the one refused is retried and then set aside for review."""
    from mailer import inbound

    _, sent = await one_sent(world, smtp, n=3)
    real = inbound.decide_reports
    refused = sent[1][0]

    async def refusing(session, judged, **kwargs):
        if any(j.report.recipient == refused for j in judged):
            raise sa.exc.DataError("UPDATE inbound_message", None, Exception("bad value"))
        return await real(session, judged, **kwargs)

    monkeypatch.setattr(inbound, "decide_reports", refusing)
    monkeypatch.setattr(inbound, "RETRY_SECONDS", 0.01)
    for verp, _ in sent:
        await mail_report(listener[1], verp, reports.dsn(status="5.1.1", verp=verp))
    for _ in range(200):  # the retries come back to the queue a moment later
        await decided(listener)
        if all(r.state != "pending" for r in await stored(world)):
            break
        await asyncio.sleep(0.02)
    assert [(r.recipient == refused, r.state) for r in await stored(world)] == [
        (False, "decided"),
        (True, "review"),
        (False, "decided"),
    ]
    assert await entries(world) == [("hard_bounce", "bounce")] * 2


async def test_c20_unreadable_forged_and_unmapped_reports_go_to_review(world, smtp, listener):
    _, [(verp, _)] = await one_sent(world, smtp)
    forged = "bounces+" + "b" * 40 + f"@{DOMAIN}"
    await mail_report(listener[1], forged, reports.dsn(status="5.1.1", verp=forged))
    await mail_report(listener[1], verp, b"\x00\x01 not a report at all")
    await mail_report(listener[1], f"bounces@{DOMAIN}", reports.dsn(status="5.1.1"))
    await decided(listener)
    assert await entries(world) == []  # nothing guessed
    kept = [(r.state, r.rule) for r in await stored(world)]
    assert kept == [
        ("review", "forged or unknown token"),
        ("review", "nothing readable"),
        ("review", "maps to no delivery"),
    ]


async def test_c20_the_review_queue_lists_and_decides(
    world, smtp, listener, app_client, keys, services
):
    _, [(verp, _)] = await one_sent(world, smtp)
    # A report of the right delivery that the table cannot read: a person decides.
    unreadable = reports.dsn(status="5.0.0", diagnostic="550 go away", verp=verp)
    await mail_report(listener[1], verp, unreadable)
    await mail_report(listener[1], f"bounces@{DOMAIN}", reports.dsn(status="5.0.0"))
    await decided(listener)
    listed = await app_client.get("/api/v1/review", headers=keys["admin"])
    assert listed.status_code == 200
    items = listed.json()
    assert [i["why"] for i in items] == [
        "maps to no delivery",
        "permanent failure that gives no reason",
    ]
    assert all(i["kind"] == "bounce" and i["state"] == "open" for i in items)
    assert "Final-Recipient" in items[0]["raw"]
    second, first = items
    answer = await app_client.post(
        f"/api/v1/review/{first['id']}",
        json={"action": "suppress_hard", "note": "checked by hand"},
        headers=keys["admin"],
    )
    assert answer.status_code == 200 and answer.json()["state"] == "resolved"
    assert await entries(world) == [("hard_bounce", "review")]
    again = await app_client.post(
        f"/api/v1/review/{first['id']}", json={"action": "dismiss"}, headers=keys["admin"]
    )
    assert again.status_code == 422  # already reviewed: changes nothing
    dismissed = await app_client.post(
        f"/api/v1/review/{second['id']}", json={"action": "dismiss"}, headers=keys["admin"]
    )
    assert dismissed.json()["state"] == "dismissed"
    assert (await app_client.get("/api/v1/review", headers=keys["admin"])).json() == []
    resolved = await app_client.get("/api/v1/review?state=resolved", headers=keys["admin"])
    assert [i["note"] for i in resolved.json()] == ["checked by hand"]
    missing = await app_client.post(
        "/api/v1/review/999999", json={"action": "dismiss"}, headers=keys["admin"]
    )
    assert missing.status_code == 404
    bad = await app_client.post(
        f"/api/v1/review/{second['id']}", json={"action": "lift"}, headers=keys["admin"]
    )
    assert bad.status_code == 422


async def test_a_report_for_a_finished_campaign_still_counts(world, smtp, listener):
    campaign_id, [(verp, _)] = await one_sent(world, smtp)
    async with world.db.sessions() as session:
        assert (await session.get(Campaign, campaign_id)).status == "done"
    await mail_report(listener[1], verp, reports.dsn(status="5.1.2", verp=verp))
    await decided(listener)
    assert await entries(world) == [("hard_bounce", "bounce")]
    async with world.db.sessions() as session:
        assert (await session.get(Campaign, campaign_id)).status == "done"


# ---- complaints -------------------------------------------------------------------------------


@pytest.mark.parametrize("feedback_type", ["abuse", "opt-out"])
async def test_c14_c19_a_complaint_suppresses_without_acknowledgement(
    world, smtp, listener, feedback_type, clock
):
    """Sent to plain bounces@ (a feedback loop's address): found by the returned message's
    signed Message-ID, not by the Original-Rcpt-To. The entry keeps reason, channel and the
    UTC time (C14)."""
    _, [(_, message_id)] = await one_sent(world, smtp)
    raw = reports.arf(feedback_type=feedback_type, message_id=message_id)
    await mail_report(listener[1], f"bounces@{DOMAIN}", raw)
    await decided(listener)
    assert await entries(world) == [("complaint", "complaint")]
    async with world.db.sessions() as session:
        (entry,) = (await session.execute(sa.select(Suppression))).scalars()
    assert entry.created_at == clock.now() and entry.created_at.utcoffset() == timedelta(0)
    assert (await counts(world))["complaints"] == 1
    await asyncio.sleep(0.2)
    assert smtp.received == []  # C15 answers requests to the shop, not a provider's report


async def test_c19_a_complaint_found_by_its_original_mail_from(world, smtp, listener):
    _, [(verp, _)] = await one_sent(world, smtp)
    raw = reports.arf(original_mail_from=verp)
    await mail_report(listener[1], f"bounces@{DOMAIN}", raw)
    await decided(listener)
    assert await entries(world) == [("complaint", "complaint")]


async def test_c19_a_complaint_naming_only_a_recipient_is_never_guessed(world, smtp, listener):
    await one_sent(world, smtp)
    raw = reports.arf(recipient="p0@example.be")  # Original-Rcpt-To matches, nothing signed
    await mail_report(listener[1], f"bounces@{DOMAIN}", raw)
    await decided(listener)
    assert await entries(world) == []
    assert [r.state for r in await stored(world)] == ["review"]


@pytest.mark.parametrize("feedback_type", ["auth-failure", "not-spam", "virus"])
async def test_c19_other_feedback_is_recorded_and_suppresses_nothing(
    world, smtp, listener, feedback_type
):
    _, [(verp, message_id)] = await one_sent(world, smtp)
    raw = reports.arf(feedback_type=feedback_type, message_id=message_id)
    await mail_report(listener[1], verp, raw)
    await decided(listener)
    assert await entries(world) == []
    (report,) = await stored(world)
    assert (report.verdict, report.feedback_type) == ("feedback", feedback_type)


async def test_c22_a_complained_address_pushed_again_gets_no_basis(
    world, smtp, listener, app_client, keys
):
    from tests import factories

    _, [(verp, _)] = await one_sent(world, smtp)
    await mail_report(listener[1], verp, reports.arf(original_mail_from=verp))
    await decided(listener)
    pushed = await app_client.post(
        "/api/v1/contacts",
        headers=keys["shop"],
        json=factories.contact("p0@example.be", consents=[factories.consent()]),
    )
    assert pushed.status_code in (200, 201)
    campaign_id = await new_campaign(world)
    await send(world, campaign_id, await fire(world, campaign_id))
    assert smtp.received == []


# ---- while sending ---------------------------------------------------------------------------


@pytest.fixture
def slow_settings(settings):
    """Batches of 200 that a slow relay takes 2 s to take: one handoff transaction for a whole
    batch would hold SQLite's write lock that long."""
    return with_business(
        settings, delivery={**FAST, "batch_size": 200, "connections": 2, "error_budget": 50}
    )


async def test_c13_a_complaint_while_sending_is_decided_at_once_and_honoured(
    slow_settings, clock, services, smtp
):
    world = Services.build(slow_settings, clock)
    handler = world.inbound_handler()
    port = free_port()
    server = await start_listener(handler, "127.0.0.1", port)
    try:
        await people(world, 1)  # p0 first: mailed by the first campaign
        first = await new_campaign(world)
        await send(world, first, await fire(world, first))
        (earlier,) = smtp.received
        smtp.received.clear()
        await people_after(world, 120)
        second = await new_campaign(world)
        smtp.data_delay = 0.02
        sending = asyncio.create_task(send(world, second, await fire(world, second)))
        await smtp.wait_for(10)
        started = time.monotonic()
        await mail_report(
            port, earlier.mail_from, reports.arf(original_mail_from=earlier.mail_from)
        )
        await asyncio.wait_for(handler.idle(), 10)
        took = time.monotonic() - started
        suppressed_at = len(smtp.received)
        await sending
    finally:
        await server.close()
        await world.close()
    assert took < 1.0, f"decided {took:.2f} s after it was mailed, while a campaign was sending"
    assert await entries(services) == [("complaint", "complaint")]
    to_p0 = [i for i, r in enumerate(smtp.received) if r.rcpt_tos == ["p0@example.be"]]
    assert all(i < suppressed_at for i in to_p0)  # nothing to p0 after the commit (C13)


async def people_after(world, n: int) -> None:
    from campaigns.evidence.contacts import ingest_contacts
    from campaigns.evidence.inputs import ContactIn
    from tests import factories

    items = [
        (
            i,
            ContactIn.model_validate(
                factories.contact(f"q{i:03}@example.be", consents=[factories.consent()])
            ),
        )
        for i in range(n)
    ]
    await world.db.transaction(lambda s: ingest_contacts(s, items, world.context))


async def test_c37_complaints_above_the_limit_pause_the_run_and_resume_continues_it(
    world, smtp, listener, app_client, keys
):
    """min_delivered = 5 here (1,000 in the default configuration): one complaint among the
    first deliveries is far above 0.3%."""
    await people(world, 40)
    campaign_id = await new_campaign(world)
    run = await fire(world, campaign_id)
    smtp.data_delay = 0.05
    sending = asyncio.create_task(send(world, campaign_id, run))
    await smtp.wait_for(8)
    complained = smtp.received[0]
    await mail_report(
        listener[1], complained.mail_from, reports.arf(original_mail_from=complained.mail_from)
    )
    await decided(listener)
    await asyncio.wait_for(sending, 20)
    detail = (
        await app_client.get(f"/api/v1/campaigns/{campaign_id}", headers=keys["marketer"])
    ).json()
    assert detail["status"] == "paused"
    assert detail["paused_reason"].startswith("paused: complaints at")
    assert detail["reputation"]["overall"]["complaints"] == 1
    assert detail["reputation"]["domains"][0]["domain"] == "example.be"
    before = len(smtp.received)
    assert before < 40
    resumed = await app_client.post(
        f"/api/v1/campaigns/{campaign_id}/resume", headers=keys["marketer"]
    )
    assert resumed.status_code in (200, 201), resumed.text
    smtp.data_delay = 0
    await send(world, campaign_id, run)
    assert Counter(r.rcpt_tos[0] for r in smtp.received) == {
        f"p{i}@example.be": 1 for i in range(40)
    }
    async with world.db.sessions() as session:
        assert (await session.get(Campaign, campaign_id)).status == "done"


async def test_c37_a_domain_that_blocks_the_run_pauses_it(world, smtp, app_client, keys):
    await people(world, 12)
    for i in range(2):
        smtp.refuse[f"p{i}@example.be"] = "550 5.7.1 Message rejected due to poor reputation"
    campaign_id = await new_campaign(world)
    await send(world, campaign_id, await fire(world, campaign_id))
    detail = (
        await app_client.get(f"/api/v1/campaigns/{campaign_id}", headers=keys["marketer"])
    ).json()
    assert detail["status"] == "paused"
    assert "example.be refused" in detail["paused_reason"]
    assert detail["reputation"]["overall"]["blocks"] >= 1  # paused at the first past 5%
    assert await entries(world) == []  # a block says nothing against the address (C17)


# ---- relays that post ------------------------------------------------------------------------


async def test_relay_events_feed_the_same_table_once(world, smtp, app_client, keys):
    _, sent = await one_sent(world, smtp, n=3)
    (_, id0), (verp1, _), (_, id2) = sent
    post = lambda body: app_client.post("/api/v1/bounces", json=body, headers=keys["relay"])  # noqa: E731
    at = "2026-12-01T10:00:00Z"
    hard = {"message_id": id0, "type": "hard", "status": "5.1.1", "timestamp": at}
    first = await post(hard)
    assert first.status_code == 202 and first.json()["suppressed"] == "hard_bounce"
    again = await post(hard)
    assert again.status_code == 202 and again.json()["duplicate"] is True
    complaint = await post({"token": verp1, "type": "complaint", "timestamp": at})
    assert complaint.json()["suppressed"] == "complaint"
    block = await post(
        {
            "message_id": id2,
            "type": "hard",
            "status": "5.7.1",
            "diagnostic": "spam",
            "timestamp": at,
        }
    )
    assert block.json() == {
        "accepted": True,
        "duplicate": False,
        "verdict": "block",
        "suppressed": None,
    }
    unknown = await post({"message_id": "<nothing@example.be>", "type": "hard", "timestamp": at})
    assert unknown.json()["verdict"] == "review"
    assert await entries(world) == [("hard_bounce", "relay"), ("complaint", "complaint")]
    for wrong in (
        {"type": "hard", "timestamp": at},
        {"message_id": id0, "type": "bounced", "timestamp": at},
        {"message_id": id0, "type": "hard", "timestamp": "yesterday"},
        {"message_id": id0, "type": "hard", "status": "551", "timestamp": at},
    ):
        refused = await post(wrong)
        assert refused.status_code == 422, wrong
    assert len(await stored(world)) == 4  # the refused ones stored nothing


def ses_notification(kind: str, message_id: str, **detail) -> dict:
    """An SES notification as AWS documents it (notification-examples), headers included."""
    mail = {
        "timestamp": "2026-12-01T09:59:00.000Z",
        "source": f"nieuws@{DOMAIN}",
        "messageId": "0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000",
        "destination": ["p0@example.be"],
        "headersTruncated": False,
        "commonHeaders": {"messageId": message_id, "subject": "Nieuws"},
    }
    return {"notificationType": kind, "mail": mail, **detail}


def sns(notification: dict) -> bytes:
    """As SNS posts it to an HTTP(S) subscription: the notification as a JSON string."""
    envelope = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-feedback",
        "Message": json.dumps(notification),
        "Timestamp": "2026-12-01T10:00:01.000Z",
    }
    return json.dumps(envelope).encode()


async def test_c17_c19_amazon_ses_notifications_through_sns_feed_the_same_table(
    world, smtp, app_client, keys
):
    _, sent = await one_sent(world, smtp, n=3)
    (_, id0), (_, id1), (_, id2) = sent
    key = keys["relay"]["Authorization"].removeprefix("Bearer ")
    basic = {  # SNS can send only HTTP Basic: the key is the password
        "Authorization": "Basic " + base64.b64encode(f"sns:{key}".encode()).decode(),
        "Content-Type": "text/plain; charset=UTF-8",  # what SNS sends
    }

    async def post(body: bytes, headers=basic):
        return await app_client.post("/api/v1/bounces/ses", content=body, headers=headers)

    at = "2026-12-01T10:00:00.000Z"
    bounce = {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "bouncedRecipients": [
            {
                "emailAddress": "p0@example.be",
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown",
            }
        ],
        "timestamp": at,
    }
    hard = await post(sns(ses_notification("Bounce", id0, bounce=bounce)))
    assert hard.status_code == 202, hard.text
    assert hard.json()["events"] == [
        {"accepted": True, "duplicate": False, "verdict": "hard", "suppressed": "hard_bounce"}
    ]
    again = await post(sns(ses_notification("Bounce", id0, bounce=bounce)))
    assert again.json()["events"][0]["duplicate"] is True
    complaint = {"complainedRecipients": [{"emailAddress": "p1@example.be"}], "timestamp": at}
    complained = await post(sns(ses_notification("Complaint", id1, complaint=complaint)))
    assert complained.json()["events"][0]["suppressed"] == "complaint"
    not_spam = {**complaint, "complaintFeedbackType": "not-spam"}
    ignored = await post(sns(ses_notification("Complaint", id2, complaint=not_spam)))
    assert ignored.json()["events"] == []
    assert ignored.json()["ignored"] == ["complaint feedback type not-spam"]
    # Bare, as an event destination posts it, and with a Bearer key: a block (5.7.1), not hard.
    refused = {**bounce, "bouncedRecipients": [{"status": "5.7.1", "diagnosticCode": "spam"}]}
    bare = json.dumps(ses_notification("Bounce", id2, bounce=refused)).encode()
    block = await post(bare, keys["relay"])
    assert block.json()["events"][0]["verdict"] == "block"
    confirm = {"Type": "SubscriptionConfirmation", "SubscribeURL": "https://sns.example/confirm"}
    subscribed = await post(json.dumps(confirm).encode())
    assert subscribed.status_code == 202 and subscribed.json()["subscription_to_confirm"] is True
    assert await entries(world) == [("hard_bounce", "relay"), ("complaint", "complaint")]
    no_time = json.dumps({"notificationType": "Bounce", "bounce": {}}).encode()
    for wrong in (b"not json", b"[1]", sns({"notificationType": "Bounce"}) + b"}", no_time):
        assert (await post(wrong)).status_code == 422, wrong
    assert (await post(bare, {"Authorization": "Basic bm90OmFrZXk="})).status_code == 401
    assert len(await stored(world)) == 3  # hard, complaint, block: nothing else stored


# ---- a crash between accept and decision ----------------------------------------------------

HANGING_LISTENER = """
import asyncio, sys
from mailer import inbound
from mailer.services import Services
from mailer.settings import Settings

async def never(*args, **kwargs):
    await asyncio.Event().wait()  # this process dies before it decides anything

inbound.decide_reports = never

async def main():
    services = Services.build(Settings.from_env())
    await inbound.start_listener(services.inbound_handler(), "127.0.0.1", int(sys.argv[1]))
    print("listening", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def hanging_listener(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", HANGING_LISTENER, str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


async def test_c20_a_report_accepted_before_a_kill_9_is_decided_after_restart_once(
    world, smtp, settings, tmp_path
):
    _, [(verp, _)] = await one_sent(world, smtp)
    port = free_port()
    env = {
        **os.environ,
        "MAILER_DATABASE_URL": settings.database_url,
        "MAILER_CONFIG": str(ROOT / "mailer.example.toml"),
        "MAILER_SECRET_KEYS": TEST_SECRET.decode(),
        "MAILER_DEV": "1",
    }
    child = hanging_listener(env, port)
    try:
        assert child.stdout is not None
        line = await asyncio.to_thread(child.stdout.readline)
        assert line.strip() == b"listening"
        await mail_report(port, verp, reports.dsn(status="5.1.1", verp=verp))  # 250: stored
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    async with world.db.sessions() as session:
        assert len(await pending_reports(session)) == 1
    assert await entries(world) == []
    for _ in range(2):  # restarted twice: decided once
        handler = world.inbound_handler()
        server = await start_listener(handler, "127.0.0.1", free_port())
        await asyncio.wait_for(handler.idle(), 10)
        await server.close()
    assert await entries(world) == [("hard_bounce", "bounce")]
    assert [r.state for r in await stored(world)] == ["decided"]


async def test_c37_a_limit_passed_while_paused_by_a_marketer_pauses_after_resume(
    world, smtp, listener, app_client, keys
):
    """The guard marks a limit as seen only when its pause is the one shown: a campaign the
    marketer paused is looked at again when it resumes."""
    await people(world, 40)
    campaign_id = await new_campaign(world)
    run = await fire(world, campaign_id)
    smtp.data_delay = 0.05
    sending = asyncio.create_task(send(world, campaign_id, run))
    await smtp.wait_for(8)
    # The marketer's pause, as the console or the API makes it (the test client would block
    # this event loop, where the dispatcher runs, while it waits for the app's thread).
    await world.db.transaction(
        lambda s: lifecycle.pause(s, campaign_id, world.context), urgent=True
    )
    await asyncio.wait_for(sending, 20)
    first = smtp.received[0]
    await mail_report(listener[1], first.mail_from, reports.arf(original_mail_from=first.mail_from))
    await decided(listener)
    async with world.db.sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert (campaign.status, campaign.paused_reason) == ("paused", pauses.by_marketer())
    await app_client.post(f"/api/v1/campaigns/{campaign_id}/resume", headers=keys["marketer"])
    smtp.data_delay = 0.05
    resumed = asyncio.create_task(send(world, campaign_id, run))
    await asyncio.wait_for(resumed, 20)
    async with world.db.sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
    assert campaign.status == "paused"
    assert campaign.paused_reason.startswith("paused: complaints at")


async def test_the_listener_logs_no_address_and_no_token(world, smtp, listener, caplog):
    import logging

    caplog.set_level(logging.INFO)  # what `serve` logs
    _, [(verp, message_id)] = await one_sent(world, smtp)
    token = verp.split("+", 1)[1].split("@", 1)[0]
    await mail_report(listener[1], verp, reports.dsn(status="5.1.1", verp=verp))
    await mail_report(
        listener[1], f"bounces@{DOMAIN}", reports.arf(feedback_type="x" * 60, message_id=message_id)
    )
    await decided(listener)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "report" in text  # it does log what it decided
    assert token not in text and "p0@example.be" not in text and "@example.be" not in text
    reasons = [r.feedback_type for r in await stored(world)]
    assert reasons == [None, "x" * 32]  # a long field is cut to its column, not a failure
