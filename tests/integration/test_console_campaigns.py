"""The console's campaign and people pages over HTTP (issue 13, C39): the editor creates and
edits, the preview shows the exact message per language, the audience counts and explains,
the firings follow a cron line, schedule/pause/resume/cancel change the campaign and are
audited, the test send reaches the internal list only, and admins alone add suppressions,
export and decide reviews. SQLite and PostgreSQL. The browser flow is in test_console_flow.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa

from campaigns.models import AuditEntry, Campaign, Suppression
from tests import factories
from tests.integration.test_console import logged_in, staff

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def in_english(app_client):
    app_client.headers["Accept-Language"] = "en"  # the words the assertions read


DRAFT = {
    "name": "Winter tea",
    "purpose": "newsletter",
    "categories": ["tea"],
    "subject": "Warm tea for cold days",
    "template": "newsletter.html",
    "locale": "",
}


async def people(app_client: Any, keys: Any) -> dict[str, str]:
    """Three contacts: one with consent, one customer (soft opt-in for tea), one with nothing;
    their ids by address."""
    contacts = [
        factories.contact("consent@example.be", consents=[factories.consent()], locale="fr"),
        factories.contact("buyer@example.be", orders=[factories.order(categories=["tea"])]),
        factories.contact("nobody@example.be"),
    ]
    ids = {}
    for contact in contacts:
        answer = await app_client.post("/api/v1/contacts", headers=keys["shop"], json=contact)
        assert answer.status_code == 201, answer.text
        ids[contact["email"]] = answer.json()["id"]
    return ids


async def create(app_client: Any, csrf: str, **changes: Any) -> Any:
    return await app_client.post(
        "/console/campaigns/new", data={**DRAFT, **changes, "csrf": csrf}, follow_redirects=False
    )


async def actions(services: Any) -> list[str]:
    async with services.db.sessions() as session:
        rows = await session.execute(sa.select(AuditEntry.action).order_by(AuditEntry.id))
        return list(rows.scalars())


async def test_c39_the_editor_creates_and_edits_a_campaign_and_bad_input_changes_nothing(
    app_client, services
):
    await staff(services, "mia@ollekebolleke.be", "marketer")
    csrf = await logged_in(app_client, "mia@ollekebolleke.be")
    form = await app_client.get("/console/campaigns/new")
    assert form.status_code == 200 and 'name="subject"' in form.text
    refused = await create(app_client, "wrong")
    assert refused.status_code == 403
    bad = await create(app_client, csrf, template="nope.html")
    assert bad.status_code == 422 and "nothing changed" in bad.text
    async with services.db.sessions() as session:
        assert (
            await session.execute(sa.select(sa.func.count()).select_from(Campaign))
        ).scalar() == 0
    made = await create(app_client, csrf)
    assert made.status_code == 303
    campaign_id = re.search(r"/console/campaigns/(\w+)", made.headers["location"]).group(1)
    page = await app_client.get(made.headers["location"])
    assert "Saved." in page.text and 'value="Warm tea for cold days"' in page.text
    edited = await app_client.post(
        f"/console/campaigns/{campaign_id}",
        data={**DRAFT, "subject": "Hot tea", "csrf": csrf},
        follow_redirects=False,
    )
    assert edited.status_code == 303
    async with services.db.sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.subject == "Hot tea"
    assert await actions(services) == ["login", "campaign.create", "campaign.edit"]


async def test_the_preview_shows_the_exact_message_per_language_with_headers_and_footer(
    app_client, keys, services
):
    ids = await people(app_client, keys)
    await staff(services, "mia@ollekebolleke.be", "marketer")
    await logged_in(app_client, "mia@ollekebolleke.be")
    texts = {}
    for lang in ("nl", "fr"):
        shown = await app_client.get("/console/preview", params={**DRAFT, "lang": lang})
        assert shown.status_code == 200, shown.text
        assert "List-Unsubscribe-Post" in shown.text and "Warm tea for cold days" in shown.text
        assert "frame-ancestors 'self'" in shown.headers["content-security-policy"]
        texts[lang] = shown.text
    assert texts["nl"] != texts["fr"]  # the French variant of the template and footer
    assert "Publicité" in texts["fr"]  # C30: the label in the mail's language
    as_contact = await app_client.get(
        "/console/preview", params={**DRAFT, "as": "consent@example.be"}
    )
    assert "consent@example.be" in as_contact.text
    not_theirs = await app_client.get(
        "/console/preview", params={**DRAFT, "as": "nobody@example.be"}
    )
    assert "no_basis" in not_theirs.text
    # Stand-in ids: the preview's links act on nobody, whoever it shows (C39): the contact's
    # preference link is the sample's, which reaches no one.
    sample = await app_client.get("/console/preview", params=DRAFT)
    links = [re.findall(r"/p/[\w-]+", page.text) for page in (as_contact, sample)]
    assert links[0] and links[0] == links[1]
    assert ids


async def test_c1_c8_the_audience_counts_by_basis_and_reason_with_the_sentence_why(
    app_client, keys, services
):
    await people(app_client, keys)
    await staff(services, "mia@ollekebolleke.be", "marketer")
    await logged_in(app_client, "mia@ollekebolleke.be")
    shown = await app_client.get(
        "/console/audience", params={"purpose": "newsletter", "categories": "tea"}
    )
    assert shown.status_code == 200
    assert "2 contacts would get it now" in shown.text
    assert "consent@example.be" in shown.text and "buyer@example.be" in shown.text
    assert "customer who bought tea on" in shown.text
    assert "no consent for this purpose and no qualifying order" in shown.text
    # Another category: the customer's exception does not cover it (C8).
    other = await app_client.get(
        "/console/audience", params={"purpose": "newsletter", "categories": "coffee"}
    )
    assert "1 contacts would get it now" in other.text
    assert "not similar to what they bought" in other.text


async def test_the_next_five_firings_in_local_time(app_client, services):
    await staff(services, "mia@ollekebolleke.be", "marketer")
    await logged_in(app_client, "mia@ollekebolleke.be")
    shown = await app_client.get(
        "/console/firings", params={"cron": "0 9 * * MON", "timezone": "Europe/Brussels"}
    )
    firings = re.findall(r"<li>([^<]+)</li>", shown.text)
    assert len(firings) == 5 and all(f.startswith("Mon ") and "09:00 CET" in f for f in firings)
    wrong = await app_client.get("/console/firings", params={"cron": "61 * * * *"})
    assert "not valid" in wrong.text


async def test_c39_schedule_pause_resume_cancel_and_test_send_are_audited(
    app_client, keys, services, smtp
):
    await people(app_client, keys)
    await staff(services, "mia@ollekebolleke.be", "marketer")
    csrf = await logged_in(app_client, "mia@ollekebolleke.be")
    campaign_id = re.search(
        r"/console/campaigns/(\w+)", (await create(app_client, csrf)).headers["location"]
    ).group(1)
    base = f"/console/campaigns/{campaign_id}"
    nobody = await app_client.post(f"{base}/test", data={"csrf": csrf, "to": "x@example.be"})
    assert nobody.status_code == 422 and smtp.received == []
    sent = await app_client.post(f"{base}/test", data={"csrf": csrf, "to": "qa@ollekebolleke.be"})
    assert sent.status_code == 200 and "Test sent to qa@ollekebolleke.be." in sent.text
    (mail,) = await smtp.wait_for(1)
    assert mail.rcpt_tos == ["qa@ollekebolleke.be"]
    cron = {"csrf": csrf, "mode": "cron", "cron": "0 9 * * MON", "timezone": "Europe/Brussels"}
    planned = await app_client.post(f"{base}/schedule", data=cron, follow_redirects=False)
    assert planned.status_code == 303
    page = await app_client.get(base)
    assert "Recurring: 0 9 * * MON (Europe/Brussels)" in page.text
    assert len(re.findall(r"<li>Mon [^<]+09:00 CET</li>", page.text)) >= 5
    for step, status in (("pause", "paused"), ("resume", "scheduled"), ("cancel", "cancelled")):
        done = await app_client.post(f"{base}/{step}", data={"csrf": csrf}, follow_redirects=False)
        assert done.status_code == 303, step
        async with services.db.sessions() as session:
            campaign = await session.get(Campaign, campaign_id)
            assert campaign is not None and campaign.status == status
    again = await app_client.post(f"{base}/pause", data={"csrf": csrf})
    assert again.status_code == 409  # cancelled: nothing to pause, and it says so
    assert await actions(services) == [
        "login", "campaign.create", "campaign.test_send", "campaign.schedule.cron",
        "campaign.pause", "campaign.resume", "campaign.cancel",
    ]  # fmt: skip


async def test_c39_c14_only_admins_suppress_and_export_and_the_search_shows_little(
    app_client, keys, services
):
    ids = await people(app_client, keys)
    await staff(services, "mia@ollekebolleke.be", "marketer")
    await staff(services, "jan@ollekebolleke.be", "admin")
    csrf = await logged_in(app_client, "mia@ollekebolleke.be")
    form = {"csrf": csrf, "email": "nobody@example.be", "note": "asked by phone"}
    assert (await app_client.post("/console/suppressions", data=form)).status_code == 403
    export = f"/console/contacts/{ids['consent@example.be']}/export"
    assert (await app_client.post(export, data={"csrf": csrf})).status_code == 403
    async with services.db.sessions() as session:
        assert (await session.execute(sa.select(Suppression))).first() is None
    app_client.cookies.clear()
    csrf = await logged_in(app_client, "jan@ollekebolleke.be")
    added = await app_client.post(
        "/console/suppressions", data={**form, "csrf": csrf}, follow_redirects=False
    )
    assert added.status_code == 303
    found = await app_client.get("/console/suppressions", params={"q": "Nobody@Example.be"})
    assert "On the suppression list" in found.text and "manual" in found.text
    assert "asked by phone" not in found.text  # reason, channel and date only
    document = await app_client.post(export, data={"csrf": csrf})
    assert document.status_code == 200
    assert "attachment" in document.headers["content-disposition"]
    assert document.json()["contact"]["email"] == "consent@example.be"
    assert (await actions(services))[-2:] == ["suppression.add", "contact.export"]
    review = await app_client.get("/console/review")
    assert review.status_code == 200 and "Nothing to review." in review.text
    gone = await app_client.get("/console/campaigns/" + "f" * 32)
    assert gone.status_code == 404 and "This does not exist" in gone.text  # a page, not JSON
    tracking = await app_client.get("/console/preview", params={**DRAFT, "purpose": "tracking"})
    assert "not a purpose to mail for" in tracking.text


async def test_c39_no_console_form_changes_anything_without_its_csrf_token(
    app_client, keys, services
):
    """Every state-changing route of the console, posted without the session's token or with
    a wrong one, as an admin: 403, and nothing changed (no audit line beyond the login)."""
    ids = await people(app_client, keys)
    await staff(services, "jan@ollekebolleke.be", "admin")
    csrf = await logged_in(app_client, "jan@ollekebolleke.be")
    made = await create(app_client, csrf)
    campaign_id = re.search(r"/console/campaigns/(\w+)", made.headers["location"]).group(1)
    contact_id = ids["nobody@example.be"]
    routes = {
        "/console/campaigns/new": DRAFT,
        f"/console/campaigns/{campaign_id}": {**DRAFT, "subject": "Changed"},
        f"/console/campaigns/{campaign_id}/test": {"to": "qa@ollekebolleke.be"},
        f"/console/campaigns/{campaign_id}/schedule": {"mode": "now"},
        f"/console/campaigns/{campaign_id}/pause": {},
        f"/console/campaigns/{campaign_id}/cancel": {},
        "/console/suppressions": {"email": "nobody@example.be"},
        f"/console/contacts/{contact_id}/export": {},
        f"/console/contacts/{contact_id}/erase": {},
        "/console/review/1": {"action": "dismiss"},
        "/console/logout": {},
    }
    before = await actions(services)
    for path, form in routes.items():
        for token in ({}, {"csrf": "x" + csrf}):
            answer = await app_client.post(path, data={**form, **token}, follow_redirects=False)
            assert answer.status_code == 403, (path, token, answer.status_code)
    assert await actions(services) == before
    async with services.db.sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.status == "draft"
        assert campaign.subject == DRAFT["subject"]
        assert (await session.execute(sa.select(Suppression))).first() is None
    assert (await app_client.get("/console/")).status_code == 200  # still logged in


async def test_c39_a_marketer_cannot_read_the_review_queue_nor_decide(app_client, services):
    await staff(services, "mia@ollekebolleke.be", "marketer")
    csrf = await logged_in(app_client, "mia@ollekebolleke.be")
    assert (await app_client.get("/console/review")).status_code == 403
    assert (await app_client.get("/console/suppressions?q=a@example.be")).status_code == 403
    decided = await app_client.post("/console/review/1", data={"csrf": csrf, "action": "dismiss"})
    assert decided.status_code == 403
    assert await actions(services) == ["login"]
