"""Tracking only with consent (C35, C36), end to end on SQLite and PostgreSQL: a campaign sent
through the real dispatcher and SMTP server to a contact who consented to `tracking` and one
who did not; the links and pixel in the mails as received; the redirect and the pixel over
HTTP; link scanners; the aggregate; withdrawal; export, erasure and retention of the events."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaigns.audience.eligibility import AudienceRules, CampaignTarget, audience_query
from campaigns.evidence.contacts import ingest_contacts
from campaigns.evidence.inputs import ContactIn
from campaigns.models import Contact, TrackedLink, TrackingEvent
from campaigns.rights import retention
from campaigns.rights.retention import retention_due
from campaigns.sending.content import written_links
from campaigns.tokens import Kind
from campaigns.tracking import Fetch, follow_click
from mailer.scheduler import run_retention
from tests import factories
from tests.conftest import NOW
from tests.integration.test_dispatch import fire, new_campaign, send

pytestmark = pytest.mark.integration
RECIPES = "https://ollekebolleke.be/recepten"  # the newsletter's own link (templates/email)
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"
TRACKED = "tracked@example.be"
UNTRACKED = "untracked@example.be"


async def two_people(world) -> dict[str, str]:
    """Both consent to the newsletter; only the first to tracking. email -> contact id."""
    items = [
        (
            0,
            ContactIn.model_validate(
                factories.contact(
                    TRACKED, consents=[factories.consent(), factories.consent("tracking")]
                )
            ),
        ),
        (1, ContactIn.model_validate(factories.contact(UNTRACKED, consents=[factories.consent()]))),
    ]
    outcomes = await world.db.transaction(lambda s: ingest_contacts(s, items, world.context))
    return {TRACKED: outcomes[0].contact_id, UNTRACKED: outcomes[1].contact_id}


async def sent_mails(world, smtp) -> tuple[str, dict[str, tuple[str, str]]]:
    """Send a newsletter; per address, (html, text) of the mail as received."""
    campaign_id = await new_campaign(world)
    await send(world, campaign_id, await fire(world, campaign_id))
    mails = {}
    for received in smtp.received:
        message = received.message
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        mails[received.rcpt_tos[0]] = (html, text)
    smtp.received.clear()
    return campaign_id, mails


def links_in(html: str) -> list[str]:
    return written_links(html, html_part=True)


def path_of(url: str) -> str:
    return url.removeprefix("https://mailer.example.test")


async def clicks(app_client, keys, campaign_id: str) -> dict:
    response = await app_client.get(
        f"/api/v1/campaigns/{campaign_id}/clicks", headers=keys["marketer"]
    )
    assert response.status_code == 200, response.text
    return response.json()


def on_recipes(said: dict) -> dict:
    """The aggregate of the nl newsletter's link (the campaign also has the fr and en ones)."""
    [link] = [link for link in said["links"] if link["url"] == RECIPES]
    return link


async def events(world) -> list[tuple[str, str | None]]:
    async with world.db.sessions() as session:
        rows = await session.execute(
            sa.select(TrackingEvent.kind, TrackingEvent.scanner).order_by(TrackingEvent.id)
        )
        return [tuple(row) for row in rows.all()]


async def test_c35_only_the_consenting_contact_gets_tracked_links_and_a_pixel(world, smtp):
    await two_people(world)
    _, mails = await sent_mails(world, smtp)
    tracked_html, tracked_text = mails[TRACKED]
    plain_html, plain_text = mails[UNTRACKED]
    # Not tracked: the campaign's own link, no pixel.
    assert RECIPES in links_in(plain_html) and RECIPES in plain_text
    assert "/c/" not in plain_html + plain_text and "/o/" not in plain_html
    # Tracked: the link goes through /c/, in both parts; the pixel is there.
    assert RECIPES not in tracked_html and RECIPES not in tracked_text
    redirects = [link for link in links_in(tracked_html) if "/c/" in link]
    assert len(redirects) == 1
    assert redirects[0] in tracked_text
    assert re.search(r'<img src="https://mailer\.example\.test/o/[a-z2-7]+\.gif"', tracked_html)
    # The footer's links are never rewritten: unsubscribe and preferences work as before.
    for html in (tracked_html, plain_html):
        assert re.search(r'href="https://mailer\.example\.test/u/[a-z2-7]+"', html)
        assert re.search(r'href="https://mailer\.example\.test/p/[a-z2-7]+"', html)


async def test_c35_the_redirect_goes_only_to_a_link_of_the_campaign(
    world, smtp, app_client, keys, clock
):
    await two_people(world)
    campaign_id, mails = await sent_mails(world, smtp)
    [redirect] = [link for link in links_in(mails[TRACKED][0]) if "/c/" in link]
    clock.advance(timedelta(minutes=5))
    followed = await app_client.get(
        path_of(redirect), headers={"User-Agent": BROWSER}, follow_redirects=False
    )
    assert followed.status_code == 302
    assert followed.headers["location"] == RECIPES
    assert followed.headers["referrer-policy"] == "no-referrer"
    # A tampered token, a forged one, and a valid delivery with a link of another campaign.
    token = path_of(redirect).removeprefix("/c/")
    tampered = token[:-2] + ("aa" if token[-2:] != "aa" else "bb")
    assert (await app_client.get(f"/c/{tampered}", follow_redirects=False)).status_code == 404
    assert (await app_client.get("/c/" + "a" * 53, follow_redirects=False)).status_code == 404
    delivery_id, _ = world.signer.read_click(token)
    async with world.db.sessions() as session:
        session.add(TrackedLink(campaign_id="another", url="https://evil.example/phish"))
        await session.commit()
        other = (
            await session.execute(
                sa.select(TrackedLink.id).where(TrackedLink.campaign_id == "another")
            )
        ).scalar_one()
    foreign = world.signer.click_token(delivery_id, other)
    assert (await app_client.get(f"/c/{foreign}", follow_redirects=False)).status_code == 404
    assert (
        await app_client.get(
            f"/c/{world.signer.click_token(delivery_id, 99999)}", follow_redirects=False
        )
    ).status_code == 404
    # The click counted once, for the one person.
    said = await clicks(app_client, keys, campaign_id)
    assert on_recipes(said) == {"url": RECIPES, "clicks": 1, "people": 1}
    assert sum(link["clicks"] for link in said["links"]) == 1
    assert await events(world) == [("click", None)]


async def test_c35_link_scanners_are_not_counted_as_people(world, smtp, app_client, keys, clock):
    await two_people(world)
    campaign_id, mails = await sent_mails(world, smtp)
    [redirect] = [link for link in links_in(mails[TRACKED][0]) if "/c/" in link]
    path = path_of(redirect)
    # On arrival (within seconds of the send), a HEAD check, an HTTP library: all redirected,
    # none counted.
    assert (
        await app_client.get(path, headers={"User-Agent": BROWSER}, follow_redirects=False)
    ).status_code == 302
    clock.advance(timedelta(minutes=5))
    assert (
        await app_client.head(path, headers={"User-Agent": BROWSER}, follow_redirects=False)
    ).status_code == 302
    assert (
        await app_client.get(
            path, headers={"User-Agent": "python-requests/2.32"}, follow_redirects=False
        )
    ).status_code == 302
    assert (
        await app_client.get(path, headers={"User-Agent": ""}, follow_redirects=False)
    ).status_code == 302
    said = await clicks(app_client, keys, campaign_id)
    assert on_recipes(said) == {"url": RECIPES, "clicks": 0, "people": 0}
    assert said["scanner_fetches"] == 4
    assert [scanner for _, scanner in await events(world)] == [
        "on_arrival",
        "head_request",
        "scanner_agent",
        "scanner_agent",
    ]
    # A person, later: counted.
    clock.advance(timedelta(hours=1))
    await app_client.get(path, headers={"User-Agent": BROWSER}, follow_redirects=False)
    assert on_recipes(await clicks(app_client, keys, campaign_id))["clicks"] == 1


async def test_c35_a_burst_over_several_links_is_a_scanner_s(world, smtp, app_client, keys, clock):
    """A scanner follows every link of a message at once: the clicks of the burst, the first
    one too, are taken back."""
    await two_people(world)
    campaign_id, mails = await sent_mails(world, smtp)
    [redirect] = [link for link in links_in(mails[TRACKED][0]) if "/c/" in link]
    delivery_id, link_id = world.signer.read_click(path_of(redirect).removeprefix("/c/"))
    async with world.db.sessions() as session:
        second = TrackedLink(campaign_id=campaign_id, url="https://ollekebolleke.be/tweede")
        session.add(second)
        await session.commit()
        second_id = second.id
    clock.advance(timedelta(minutes=5))
    await app_client.get(path_of(redirect), headers={"User-Agent": BROWSER}, follow_redirects=False)
    clock.advance(timedelta(seconds=1))
    other = world.signer.click_token(delivery_id, second_id)
    assert (
        await app_client.get(f"/c/{other}", headers={"User-Agent": BROWSER}, follow_redirects=False)
    ).status_code == 302
    said = await clicks(app_client, keys, campaign_id)
    assert [link["clicks"] for link in said["links"]] == [0] * len(said["links"])
    assert [scanner for _, scanner in await events(world)] == ["burst", "burst"]
    # At the same moment, in two transactions (a scanner fetches in parallel): each sees the
    # other, in whichever order they run, and nothing is taken back twice.
    clock.advance(timedelta(minutes=5))
    fetch = Fetch("GET", BROWSER)
    await asyncio.gather(
        *(
            world.db.transaction(
                lambda s, link=link: follow_click(s, delivery_id, link, fetch, world.context),
                urgent=True,
            )
            for link in (link_id, second_id)
        )
    )
    said = await clicks(app_client, keys, campaign_id)
    assert [link["clicks"] for link in said["links"]] == [0] * len(said["links"])
    assert [scanner for _, scanner in await events(world)] == ["burst"] * 4


async def test_c35_c36_the_pixel_records_an_open_of_the_consenting_only(
    world, smtp, app_client, keys, clock
):
    await two_people(world)
    campaign_id, mails = await sent_mails(world, smtp)
    pixel = re.search(r'<img src="([^"]+)"', mails[TRACKED][0]).group(1)
    clock.advance(timedelta(minutes=5))
    fetched = await app_client.get(path_of(pixel), headers={"User-Agent": BROWSER})
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/gif"
    assert fetched.content.startswith(b"GIF89a")
    assert (await app_client.get("/o/" + "a" * 26 + ".gif")).status_code == 404
    # The pixel token of the untracked person's delivery records nothing.
    async with world.db.sessions() as session:
        untracked_delivery = (
            await session.execute(
                sa.text(
                    "select d.id from delivery d join contact c on c.id = d.contact_id"
                    " where c.email = :e"
                ),
                {"e": UNTRACKED},
            )
        ).scalar_one()
    token = world.signer.delivery_token(Kind.OPEN, untracked_delivery)
    assert (await app_client.get(f"/o/{token}.gif")).status_code == 200
    assert await events(world) == [("open", None)]
    assert (await clicks(app_client, keys, campaign_id))["opens"] == 1
    # An open is no activity (C36): neither retention's test of activity nor the audience
    # (the soft-opt-in window) reads tracking events.
    inactive = str(retention._inactive(NOW).compile())
    audience = str(
        audience_query(
            AudienceRules.for_campaign(
                CampaignTarget(campaign_id, "newsletter", ("tea",)), world.context.config, NOW
            )
        ).compile()
    )
    assert "tracking_event" not in inactive and "tracking_event" not in audience


async def test_c35_withdrawing_tracking_stops_it_from_the_next_mail_and_click(
    world, smtp, app_client, keys, clock
):
    people = await two_people(world)
    campaign_id, mails = await sent_mails(world, smtp)
    [redirect] = [link for link in links_in(mails[TRACKED][0]) if "/c/" in link]
    preferences = re.search(
        r'href="https://mailer\.example\.test(/p/[a-z2-7]+)"', mails[TRACKED][0]
    )
    saved = await app_client.post(preferences.group(1), data={"purpose": ["newsletter"]})
    assert saved.status_code == 200
    clock.advance(timedelta(minutes=5))
    # The old link still leads where it did, counted in the aggregate, but no event of a
    # person whose consent is gone.
    followed = await app_client.get(
        path_of(redirect), headers={"User-Agent": BROWSER}, follow_redirects=False
    )
    assert followed.status_code == 302 and followed.headers["location"] == RECIPES
    assert await events(world) == []
    assert on_recipes(await clicks(app_client, keys, campaign_id))["clicks"] == 1
    # The next mail has the campaign's own links and no pixel.
    clock.advance(timedelta(days=7))
    _, next_mails = await sent_mails(world, smtp)
    html, text = next_mails[TRACKED]
    assert RECIPES in links_in(html) and RECIPES in text and "/o/" not in html
    assert set(next_mails) == set(people)  # both were mailed


async def test_c32_c33_c34_events_are_exported_erased_and_expire(
    world, smtp, app_client, keys, clock
):
    people = await two_people(world)
    campaign_id, mails = await sent_mails(world, smtp)
    [redirect] = [link for link in links_in(mails[TRACKED][0]) if "/c/" in link]
    clock.advance(timedelta(minutes=5))
    await app_client.get(path_of(redirect), headers={"User-Agent": BROWSER}, follow_redirects=False)
    contact_id = people[TRACKED]
    document = (
        await app_client.get(f"/api/v1/contacts/{contact_id}/export", headers=keys["admin"])
    ).json()
    [event] = document["tracking_events"]
    assert event["kind"] == "click" and event["campaign_id"] == campaign_id
    assert document["tracked_links"] == {str(event["link_id"]): RECIPES}
    # Retention: 13 months later the event goes, the aggregate stays.
    clock.advance(timedelta(days=400))
    due = await world.db.transaction(lambda s: retention_due(s, world.context))
    assert due.old_tracking_events == 1
    await run_retention(world.db, world.context)
    assert await events(world) == []
    assert on_recipes(await clicks(app_client, keys, campaign_id))["clicks"] == 1
    # Erasure takes the events of the person (the registry's walk holds it for every table).
    clock.advance(timedelta(minutes=5))
    await app_client.get(path_of(redirect), headers={"User-Agent": BROWSER}, follow_redirects=False)
    assert len(await events(world)) == 1
    erased = await app_client.delete(f"/api/v1/contacts/{contact_id}", headers=keys["admin"])
    assert erased.status_code == 204
    assert await events(world) == []
    async with world.db.sessions() as session:
        assert await session.get(Contact, contact_id) is None


async def test_c35_tracking_is_no_purpose_to_mail_for(app_client, keys):
    """Consent to be measured is no consent to get marketing: no campaign has that purpose."""
    body = {"name": "x", "purpose": "tracking", "subject": "s", "template": "newsletter.html"}
    refused = await app_client.post("/api/v1/campaigns", json=body, headers=keys["marketer"])
    assert refused.status_code == 422
    assert refused.json()["extra"]["reason"] == "not_a_mailing_purpose"
