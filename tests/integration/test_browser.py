"""The recipient pages in a real browser (Debian's chromium driven by Playwright), against the
app served by a real uvicorn: unsubscribe from a received mail, preferences, double opt-in."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from campaigns.models import ConsentEvent, Suppression
from mailer.web.page_text import PAGES
from tests import factories
from tests.integration.test_recipient_flows import mail_campaign_to, one_click_url, suppressed

pytestmark = pytest.mark.integration
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
SHOTS.mkdir(parents=True, exist_ok=True)


async def test_unsubscribe_and_preferences_in_a_browser(server, browser, keys, services, smtp):
    async with httpx.AsyncClient(base_url=server) as client:
        message, _ = await mail_campaign_to(client, keys, services, smtp)
    page = await browser.new_page()
    html = message.get_body(("html",)).get_content()
    preferences = re.search(r'href="https://mailer\.example\.test(/p/[a-z0-9]+)"', html).group(1)

    await page.goto(server + preferences)
    assert await page.get_by_label("Onze nieuwsbrief").is_checked()
    await page.get_by_label("Onze nieuwsbrief").uncheck()
    await page.get_by_label("Promoties en aanbiedingen").check()
    await page.get_by_role("button", name="Bewaren").click()
    await page.get_by_text("Je voorkeuren zijn bewaard.").wait_for()
    async with services.db.sessions() as session:
        changes = (
            await session.execute(
                sa.select(ConsentEvent.purpose, ConsentEvent.granted).where(
                    ConsentEvent.channel == "preference_center"
                )
            )
        ).all()
    assert sorted(tuple(c) for c in changes) == [("newsletter", False), ("promotions", True)]

    await page.goto(server + one_click_url(message))
    assert await page.title() == "Afmelden \u2013 Olleke Bolleke"
    assert not await suppressed(services)  # opening the page changed nothing
    await page.get_by_role("button", name="Afmelden").click()
    await page.get_by_role("heading", name="Je bent afgemeld").wait_for()
    await page.screenshot(path=str(SHOTS / "unsubscribed.png"))  # for a person to look at
    async with services.db.sessions() as session:
        entry = (await session.execute(sa.select(Suppression))).scalar_one()
    assert (entry.reason, entry.channel) == ("unsubscribe", "unsubscribe_page")


async def test_double_opt_in_in_a_browser(server, browser, keys, services, smtp):
    async with httpx.AsyncClient(base_url=server) as client:
        response = await client.post(
            "/api/v1/signups",
            headers=keys["shop"],
            json={
                "email": "nouveau@example.be",
                "locale": "fr",
                "purposes": ["newsletter"],
                "wording": "Oui, envoyez-moi la newsletter",
                "wording_version": "2026-02",
                "url": "https://shop.example.be/newsletter",
            },
        )
        assert response.status_code == 202
    (request,) = await smtp.wait_for(1)
    link = re.search(
        r"/confirm/[a-z0-9]+", request.message.get_body(("plain",)).get_content()
    ).group(0)
    page = await browser.new_page()
    await page.goto(server + link)
    await page.get_by_role("button", name="Confirmer").click()
    await page.get_by_role("heading", name="Merci !").wait_for()
    async with services.db.sessions() as session:
        event = (await session.execute(sa.select(ConsentEvent))).scalar_one()
    assert event.capture_method == "double_opt_in" and event.confirmed_at is not None


DATA_WORDS = {  # the button, the confirm button, the heading after it: as a person reads them
    "nl": (
        "Mail mij mijn gegevens",
        "Mijn gegevens wissen",
        "Alles wissen",
        "Je gegevens zijn gewist",
    ),
    "fr": (
        "M'envoyer mes données par e-mail",
        "Effacer mes données",
        "Tout effacer",
        "Vos données sont effacées",
    ),
    "en": ("Email me my data", "Delete my data", "Delete everything", "Your data is deleted"),
}


@pytest.mark.parametrize("locale", ["nl", "fr", "en"])
async def test_c38_a_person_asks_for_their_data_and_deletes_it_in_a_browser(
    server, browser, keys, services, smtp, locale
):
    """From the preference page of a received mail: each basis in words; the customer
    exception ended alone (the consent stays); the data comes by mail as JSON, never on the
    page; deleting needs the confirming button; after it, nothing of the person is left."""
    email = f"{locale}@example.be"
    async with httpx.AsyncClient(base_url=server) as client:
        message, _ = await mail_campaign_to(client, keys, services, smtp, email, locale)
        # The newsletter reader also bought tea: a second basis, the customer exception.
        order = factories.contact(email, locale=locale, orders=[factories.order("SO-9")])
        pushed = await client.post("/api/v1/contacts", json=order, headers=keys["shop"])
        assert pushed.status_code in (200, 201), pushed.text
    html = message.get_body(("html",)).get_content()
    preferences = re.search(r'href="https://mailer\.example\.test(/p/[a-z0-9]+)"', html).group(1)
    send, erase, confirm, done = DATA_WORDS[locale]
    words = PAGES[locale]
    page = await browser.new_page()
    await page.goto(server + preferences)
    tea = {"nl": "thee", "fr": "thé", "en": "tea"}[locale]  # [category_names], not the key
    assert await page.get_by_text(words["customer_basis"].split("{")[0] + tea).count() == 1
    await page.screenshot(path=str(SHOTS / f"preferences-bases-{locale}.png"), full_page=True)
    await page.get_by_label(words["customer_keep"]).uncheck()
    await page.get_by_role("button", name=words["preferences_button"]).click()
    await page.get_by_text(words["preferences_saved"]).wait_for()
    assert await page.get_by_label(words["customer_keep"]).count() == 0
    assert await page.get_by_label(words["newsletter"]).is_checked()  # the consent stays
    await page.screenshot(path=str(SHOTS / f"preferences-ended-{locale}.png"), full_page=True)
    (ack,) = await smtp.wait_for(1)  # the objection is acknowledged (C15)
    assert ack.rcpt_tos == [email]
    smtp.received.clear()
    async with services.db.sessions() as session:
        ended = (
            await session.execute(sa.text("SELECT count(*) FROM soft_opt_in_objection"))
        ).scalar()
    assert ended == 1

    await page.goto(server + preferences)
    await page.screenshot(path=str(SHOTS / f"preferences-data-{locale}.png"), full_page=True)
    await page.get_by_role("button", name=send).click()
    (mail,) = await smtp.wait_for(1)
    assert mail.rcpt_tos == [email] and email not in await page.content()
    [attachment] = list(mail.message.iter_attachments())
    assert json.loads(attachment.get_content())["contact"]["email"] == email

    await page.goto(server + preferences)
    await page.get_by_role("link", name=erase).click()
    await page.get_by_role("button", name=confirm).wait_for()
    async with services.db.sessions() as session:
        assert (await session.execute(sa.text("SELECT count(*) FROM contact"))).scalar() == 1
    await page.screenshot(path=str(SHOTS / f"erase-confirm-{locale}.png"))
    await page.get_by_role("button", name=confirm).click()
    await page.get_by_role("heading", name=done).wait_for()
    await page.screenshot(path=str(SHOTS / f"erased-{locale}.png"))
    async with services.db.sessions() as session:
        assert (await session.execute(sa.text("SELECT count(*) FROM contact"))).scalar() == 0
        reasons = (await session.execute(sa.select(Suppression.reason))).scalars().all()
    assert reasons == ["erasure"]
