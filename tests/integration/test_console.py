"""The marketers' console (C39): staff accounts, login and sessions, CSRF, slowed failed logins,
the audit log, and the campaign list, in a real browser (Debian's chromium, Playwright) against
a running uvicorn, with an axe-core accessibility check; and over HTTP for what a browser
cannot show. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from axe_playwright_python.async_playwright import Axe

from campaigns.staff import IDLE, create_user
from tests.integration.test_audience_scenarios import campaign
from tests.integration.test_browser import SHOTS

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"
LANGUAGES = {"nl": "Campagnes", "fr": "Campagnes", "en": "Campaigns"}


async def staff(services: Any, email: str, role: str) -> None:
    await services.db.transaction(
        lambda s: create_user(s, email, role, PASSWORD, services.context.clock)
    )


async def serious_violations(page: Any) -> list[str]:
    """axe-core's violations of impact serious or critical on the page."""
    results = await Axe().run(page)
    return [
        f"{v['id']}: {v['help']}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def test_c39_log_in_see_the_campaigns_log_out_in_a_browser(
    server,
    browser,
    keys,
    services,
):
    import httpx

    await staff(services, "mia@ollekebolleke.be", "marketer")
    async with httpx.AsyncClient(base_url=server) as client:
        created = await client.post(
            "/api/v1/campaigns", json={**campaign(), "name": "Winter tea"}, headers=keys["marketer"]
        )
        assert created.status_code == 201
    for lang, heading in LANGUAGES.items():
        context = await browser.new_context(
            locale=lang, extra_http_headers={"Accept-Language": lang}
        )
        page = await context.new_page()
        await page.goto(server + "/")
        assert page.url.endswith("/console/login")
        assert await serious_violations(page) == []
        await page.screenshot(path=str(SHOTS / f"console-login.{lang}.png"), full_page=True)
        email = {"nl": "E-mailadres", "fr": "Adresse e-mail", "en": "Email address"}[lang]
        password = {"nl": "Wachtwoord", "fr": "Mot de passe", "en": "Password"}[lang]
        await page.get_by_label(email).fill("mia@ollekebolleke.be")
        await page.get_by_label(password).fill(PASSWORD)
        await page.keyboard.press("Enter")  # by keyboard: the form submits
        await page.get_by_role("heading", name=heading).wait_for()
        assert await page.get_by_role("cell", name="Winter tea").is_visible()
        assert await serious_violations(page) == []
        await page.screenshot(path=str(SHOTS / f"console-campaigns.{lang}.png"), full_page=True)
        (cookie,) = [c for c in await context.cookies() if c["name"] == "mailer_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        assert not cookie["secure"]  # dev mode (plain http); Secure otherwise, see below
        await page.get_by_role("button", name=re.compile("Afmelden|Se déconnecter|Log out")).click()
        assert page.url.endswith("/console/login")
        await page.goto(server + "/console/")
        assert page.url.endswith("/console/login")  # the session is over
        await context.close()


async def logged_in(app_client: Any, email: str) -> str:
    """Log in over HTTP as a browser does; the session's CSRF token (from a page's form)."""
    form = await app_client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    answer = await app_client.post(
        "/console/login",
        data={"csrf": token, "email": email, "password": PASSWORD},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"
    page = await app_client.get("/console/")
    assert page.status_code == 200
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


async def test_c39_a_form_posted_without_its_csrf_token_changes_nothing(app_client, services):
    await staff(services, "mia@ollekebolleke.be", "marketer")
    csrf = await logged_in(app_client, "mia@ollekebolleke.be")
    refused = await app_client.post("/console/logout", data={})
    assert refused.status_code == 403
    forged = await app_client.post("/console/logout", data={"csrf": "x" + csrf})
    assert forged.status_code == 403
    assert (await app_client.get("/console/")).status_code == 200  # still logged in
    out = await app_client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert (await app_client.get("/console/", follow_redirects=False)).headers[
        "location"
    ] == "/console/login"
    # The login form's own token: a login posted from elsewhere is refused, unseen.
    app_client.cookies.clear()
    elsewhere = await app_client.post(
        "/console/login", data={"email": "mia@ollekebolleke.be", "password": PASSWORD}
    )
    assert elsewhere.status_code == 403 and "mailer_session" not in elsewhere.cookies


async def test_c39_outside_dev_mode_the_session_cookie_is_secure(settings, clock, services):
    import dataclasses

    from litestar.testing import AsyncTestClient

    from mailer.app import create_app

    await staff(services, "mia@ollekebolleke.be", "marketer")
    production = dataclasses.replace(settings, dev_mode=False)
    app = create_app(production, clock=clock)
    async with AsyncTestClient(app=app, base_url="https://mailer.example.test") as client:
        form = await client.get("/console/login")
        assert "Secure" in form.headers["set-cookie"] and "HttpOnly" in form.headers["set-cookie"]
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        answer = await client.post(
            "/console/login",
            data={"csrf": token, "email": "mia@ollekebolleke.be", "password": PASSWORD},
            follow_redirects=False,
        )
        (session,) = [c for c in answer.headers.get_list("set-cookie") if "mailer_session" in c]
        assert all(
            flag in session for flag in ("HttpOnly", "Secure", "SameSite=lax", "Path=/console")
        )


async def test_c39_five_wrong_passwords_slow_the_next_try(app_client, services, clock):
    await staff(services, "mia@ollekebolleke.be", "marketer")

    async def attempt(password: str, email: str = "mia@ollekebolleke.be") -> Any:
        form = await app_client.get("/console/login")  # each answer is a new form
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        return await app_client.post(
            "/console/login",
            data={"csrf": token, "email": email, "password": password},
            follow_redirects=False,
        )

    for _ in range(5):
        assert (await attempt("wrong wrong wrong")).status_code == 401
    slowed = await attempt(PASSWORD)  # the right one, too early: not even looked at
    assert slowed.status_code == 429 and "2" in slowed.text
    clock.advance(timedelta(seconds=3))
    assert (await attempt(PASSWORD)).status_code == 303
    # Unknown accounts answer as wrong passwords do.
    stranger = await attempt(PASSWORD, email="nobody@example.be")
    assert stranger.status_code == 401


async def test_c39_sessions_end_when_idle_and_only_admins_read_the_audit_log(
    app_client, services, clock
):
    await staff(services, "mia@ollekebolleke.be", "marketer")
    await staff(services, "jan@ollekebolleke.be", "admin")
    await logged_in(app_client, "mia@ollekebolleke.be")
    assert (await app_client.get("/console/audit")).status_code == 403
    clock.advance(IDLE + timedelta(seconds=1))
    assert (await app_client.get("/console/", follow_redirects=False)).headers[
        "location"
    ] == "/console/login"
    app_client.cookies.clear()
    await logged_in(app_client, "jan@ollekebolleke.be")
    log = await app_client.get("/console/audit")
    assert log.status_code == 200
    assert "mia@ollekebolleke.be" in log.text and "jan@ollekebolleke.be" in log.text
    assert log.text.count(">login<") == 2


async def test_c39_staff_accounts_from_the_command_line(settings, services, app_client):
    """`python -m mailer users create`: the password read from stdin, hashed with argon2."""
    import sqlalchemy as sa

    from campaigns.models import StaffUser
    from tests.integration.test_migrations_and_cli import cli

    url = settings.database_url
    create = ("users", "create", "--password-stdin", "--email")
    done = cli(url, *create, "Jan@OllekeBolleke.be", "--role", "admin", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    async with services.db.sessions() as session:
        (user,) = (await session.execute(sa.select(StaffUser))).scalars().all()
    assert user.email == "jan@ollekebolleke.be" and user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in done.stdout + done.stderr
    short = cli(url, *create, "x@example.be", "--role", "marketer", stdin="short\n")
    assert short.returncode == 2 and "12 characters" in short.stderr
    await logged_in(app_client, "jan@ollekebolleke.be")


async def browser_login(browser: Any, server: str, email: str, lang: str = "en") -> Any:
    context = await browser.new_context(locale=lang, extra_http_headers={"Accept-Language": lang})
    page = await context.new_page()
    await page.goto(server + "/console/login")
    await page.get_by_label("Email address").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_role("heading", name="Campaigns").wait_for()
    return page


async def test_c39_c33_find_a_contact_read_why_and_only_an_admin_erases(
    server, browser, keys, services
):
    import httpx
    import sqlalchemy as sa

    from campaigns.models import Contact, Suppression
    from tests import factories

    await staff(services, "mia@ollekebolleke.be", "marketer")
    await staff(services, "jan@ollekebolleke.be", "admin")
    async with httpx.AsyncClient(base_url=server) as client:
        pushed = await client.post(
            "/api/v1/contacts",
            headers=keys["shop"],
            json=factories.contact(
                "an@example.be",
                external_id="cust-42",
                consents=[factories.consent()],
                orders=[factories.order()],
            ),
        )
        assert pushed.status_code == 201
    contact_id = pushed.json()["id"]

    page = await browser_login(browser, server, "mia@ollekebolleke.be")
    await page.get_by_role("link", name="Contacts").click()
    await page.get_by_label("Email address or customer number").fill("cust-42")
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("link", name="an@example.be").click()
    await page.get_by_text("newsletter: consent since 2026-11-20").wait_for()
    assert await page.get_by_text("tea: bought on 2026-11-20, customer exception until").count()
    assert await page.get_by_text("Not on the suppression list.").is_visible()
    assert await page.get_by_role("button", name="Erase all of this person's data").count() == 0
    assert await serious_violations(page) == []
    await page.screenshot(path=str(SHOTS / "console-contact.en.png"), full_page=True)
    # A marketer's own post, with the right CSRF token, is refused all the same.
    csrf = await page.locator('form[action="/console/logout"] input[name="csrf"]').get_attribute(
        "value"
    )
    refused = await page.request.post(
        f"{server}/console/contacts/{contact_id}/erase", form={"csrf": csrf}
    )
    assert refused.status == 403
    async with services.db.sessions() as session:
        assert await session.get(Contact, contact_id) is not None

    page = await browser_login(browser, server, "jan@ollekebolleke.be")
    await page.goto(f"{server}/console/contacts/{contact_id}")
    assert await serious_violations(page) == []  # with the admin's export, suppress, erase
    await page.get_by_role("button", name="Erase all of this person's data").click()
    await page.get_by_text("The data is erased.").wait_for()
    async with services.db.sessions() as session:
        assert await session.get(Contact, contact_id) is None
        reasons = (await session.execute(sa.select(Suppression.reason))).scalars().all()
    assert reasons == ["erasure"]
    await page.goto(f"{server}/console/audit")
    assert await page.get_by_role("cell", name="contact.erase").is_visible()
    assert await page.get_by_role("cell", name="contact.view").count() == 2  # who looked
    assert await serious_violations(page) == []
