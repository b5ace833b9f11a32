"""A marketer's whole way through the console in a real browser (issue 13): log in, create a
campaign, preview it in two languages, see the audience and drill into a reason, ask why an
address gets it, send a test, schedule it now, watch it finish, open the report. Against a
running uvicorn with its worker and a local SMTP sink; axe-core on every page the console has;
screenshots for the README. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from mailer.app import create_app
from tests import factories
from tests.integration.conftest import served
from tests.integration.test_browser import SHOTS
from tests.integration.test_console import PASSWORD, browser_login, serious_violations, staff

pytestmark = pytest.mark.integration


@pytest.fixture
async def console_server(settings, clock) -> AsyncIterator[str]:
    """The app as `make run` serves it: with its worker, which fires what is due."""
    async with served(create_app(settings, clock=clock, with_worker=True)) as url:
        yield url


async def shop_pushes(server: str, keys: Any) -> None:
    contacts = [
        factories.contact("lotte@example.be", consents=[factories.consent()], locale="nl"),
        factories.contact("chloe@example.fr", consents=[factories.consent()], locale="fr"),
        factories.contact("bram@example.be", orders=[factories.order(categories=["tea"])]),
        factories.contact("nobody@example.be"),
    ]
    async with httpx.AsyncClient(base_url=server) as client:
        for contact in contacts:
            answer = await client.post("/api/v1/contacts", headers=keys["shop"], json=contact)
            assert answer.status_code == 201, answer.text


async def test_c39_a_marketer_writes_previews_targets_tests_schedules_and_reads_the_report(
    console_server, browser, keys, services, smtp
):
    server = console_server
    await shop_pushes(server, keys)
    await staff(services, "mia@ollekebolleke.be", "marketer")
    page = await browser_login(browser, server, "mia@ollekebolleke.be")
    seen = [page.url]

    # Write: the editor, whose preview and audience follow what is typed.
    await page.get_by_role("link", name="New campaign").click()
    await page.get_by_label("Name").fill("Winter tea")
    await page.get_by_label("Purpose").select_option("newsletter")
    await page.get_by_label("tea", exact=True).check()
    await page.get_by_label("Subject line").fill("Warm tea for cold days")
    await page.get_by_label("Template").select_option("newsletter.html")
    audience = page.locator("#audience")
    await audience.get_by_text("3 contacts would get it now").wait_for()
    preview = page.frame_locator("#preview-frame")
    await preview.get_by_role("heading", name="Warm tea for cold days").wait_for()
    await preview.get_by_text("List-Unsubscribe-Post").wait_for()
    await page.get_by_label("Preview in").select_option("fr")
    await preview.get_by_text("in French").wait_for()
    french = await preview.locator("pre").inner_text()
    assert "Publicité" in french  # the French footer's label (C30)
    await page.get_by_label("Preview in").select_option("nl")
    await preview.get_by_text("in Dutch").wait_for()
    assert "Reclame" in await preview.locator("pre").inner_text()
    assert await serious_violations(page) == []
    await page.screenshot(path=str(SHOTS / "console-editor.en.png"), full_page=True)
    await page.get_by_role("button", name="Save").click()
    await page.get_by_text("Saved.").wait_for()
    seen.append(page.url)

    # Target: drill into a reason, and ask why one address gets it.
    await audience.get_by_text("3 contacts would get it now").wait_for()
    await audience.locator("summary", has_text="customer exception (1)").click()
    await audience.get_by_text("customer who bought tea on").wait_for()
    await audience.locator("summary", has_text="no consent for this purpose").click()
    assert await audience.get_by_role("link", name="nobody@example.be").is_visible()
    await page.get_by_label("Email address or customer number").fill("bram@example.be")
    await page.get_by_role("button", name="Search").click()
    await page.get_by_text("bram@example.be: gets it: customer who bought tea").wait_for()
    assert await serious_violations(page) == []

    # Test send: the internal list only.
    await page.get_by_role("button", name="Send the test").click()
    await page.get_by_text("Test sent to qa@ollekebolleke.be.").wait_for()
    (test,) = await smtp.wait_for(1)
    assert test.rcpt_tos == ["qa@ollekebolleke.be"]

    # Schedule now, and watch it finish: the progress follows the run, the page its end.
    await page.get_by_label("Cron line").fill("0 9 * * MON")  # the next five, as typed
    await page.locator("#firings li").first.wait_for()
    assert await page.locator("#firings li").count() == 5
    await page.get_by_label("Now").check()
    await page.get_by_role("button", name="Schedule", exact=True).click()
    await page.get_by_role("link", name=re.compile("^Report of ")).wait_for(timeout=30_000)
    await page.get_by_text("3 of 3 done").wait_for(timeout=30_000)
    assert await serious_violations(page) == []
    await page.screenshot(path=str(SHOTS / "console-campaign.en.png"), full_page=True)
    received = sorted(r for m in smtp.received[1:] for r in m.rcpt_tos)
    assert received == ["bram@example.be", "chloe@example.fr", "lotte@example.be"]

    # The report.
    await page.get_by_role("link", name=re.compile("^Report of ")).click()
    await page.get_by_role("heading", name="Per receiving domain").wait_for()
    assert await page.get_by_role("cell", name="example.be", exact=True).is_visible()
    assert await serious_violations(page) == []
    await page.screenshot(path=str(SHOTS / "console-report.en.png"), full_page=True)
    seen.append(page.url)

    # Find a contact and read why they got it: the delivery, with the basis it used.
    await page.get_by_role("link", name="Contacts").click()
    await page.get_by_label("Email address or customer number").fill("bram@example.be")
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("link", name="bram@example.be").click()
    delivery = page.get_by_role("row").filter(has_text="Winter tea")
    await delivery.wait_for()
    assert "customer exception" in await delivery.inner_text()
    assert "tea: bought on" in await page.locator("main").inner_text()

    # Every other page the console has passes the same check; the admins' ones as an admin.
    campaign_url = seen[1].split("?")[0]
    for path in (
        "/console/contacts?q=lotte@example.be",
        "/console/campaigns/new",
        "/console/preview?name=x&purpose=newsletter&subject=Hallo&template=newsletter.html",
    ):
        await page.goto(server + path)
        assert await serious_violations(page) == [], path
    await page.goto(campaign_url)
    assert await serious_violations(page) == []
    await staff(services, "jan@ollekebolleke.be", "admin")
    admin = await browser_login(browser, server, "jan@ollekebolleke.be")
    for path in ("/console/suppressions?q=nobody@example.be", "/console/review", "/console/audit"):
        await admin.goto(server + path)
        assert await serious_violations(admin) == [], path


async def logged_in_as_mia(browser: Any, server: str, lang: str) -> tuple[Any, Any]:
    """A browser context in `lang`, logged in by keyboard as the marketer `staff` made (by
    the fields' ids: `browser_login` finds them by their English labels)."""
    context = await browser.new_context(locale=lang, extra_http_headers={"Accept-Language": lang})
    page = await context.new_page()
    await page.goto(server + "/console/login")
    await page.locator("#email").fill("mia@ollekebolleke.be")
    await page.locator("#password").fill(PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/console/?$"))
    return context, page


async def test_c39_the_console_in_dutch_and_french(console_server, browser, keys, services):
    """The editor in the marketer's language (pictures for the README)."""
    await shop_pushes(console_server, keys)
    await staff(services, "mia@ollekebolleke.be", "marketer")
    for lang, button in (("nl", "Nieuwe campagne"), ("fr", "Nouvelle campagne")):
        context, page = await logged_in_as_mia(browser, console_server, lang)
        await page.get_by_role("link", name=button).click()
        await page.locator("#f-name").fill("Thé d'hiver" if lang == "fr" else "Winterthee")
        await page.locator("#f-purpose").select_option("newsletter")
        await page.locator("#f-subject").fill("Warme thee" if lang == "nl" else "Thé chaud")
        await page.locator("#f-template").select_option("newsletter.html")
        await page.locator("#audience table").first.wait_for()
        await page.frame_locator("#preview-frame").locator("pre").wait_for()
        assert await serious_violations(page) == []
        await page.screenshot(path=str(SHOTS / f"console-editor.{lang}.png"), full_page=True)
        await context.close()


async def test_c37_c39_why_a_campaign_paused_in_the_marketers_language(
    server, browser, keys, services
):
    """A pause the guard made, and one a marketer made, read in Dutch, French and English on
    the campaign's page (the API keeps saying them in English)."""
    from campaigns.models import Campaign
    from campaigns.sending import pauses
    from tests.integration.test_audience_scenarios import campaign

    await staff(services, "mia@ollekebolleke.be", "marketer")
    async with httpx.AsyncClient(base_url=server) as client:
        created = await client.post("/api/v1/campaigns", json=campaign(), headers=keys["marketer"])
        assert created.status_code == 201
    campaign_id = created.json()["id"]
    said = {
        pauses.complaints(0.0045, 0.003): {
            "nl": "Gepauzeerd: klachten over 0,45% van de afgeleverde mail (grens 0,30%)",
            "fr": "En pause : plaintes pour 0,45\u202f% du courrier remis (limite 0,30\u202f%)",
            "en": "Paused: complaints at 0.45% of delivered mail (limit 0.30%)",
        },
        pauses.by_marketer(): {
            "nl": "Gepauzeerd: door een marketeer",
            "fr": "En pause : par un marketeur",
            "en": "Paused: by a marketer",
        },
    }
    for reason, words in said.items():

        async def paused(session: Any, reason: str = reason) -> None:
            row = await session.get(Campaign, campaign_id)
            row.status, row.paused_reason = "paused", reason

        await services.db.transaction(paused)
        for lang, text in words.items():
            context, page = await logged_in_as_mia(browser, server, lang)
            await page.goto(f"{server}/console/campaigns/{campaign_id}")
            await page.get_by_text(text, exact=True).wait_for()
            if reason == pauses.complaints(0.0045, 0.003):
                assert await serious_violations(page) == []
                top = {"x": 0, "y": 0, "width": 1280, "height": 360}  # the status and why
                await page.screenshot(path=str(SHOTS / f"console-paused.{lang}.png"), clip=top)
            await context.close()
        async with httpx.AsyncClient(base_url=server) as client:
            detail = await client.get(f"/api/v1/campaigns/{campaign_id}", headers=keys["marketer"])
        assert detail.json()["paused_reason"] == reason  # the API: as stored, in English
