"""Campaign lifecycle over HTTP, previews, test sends, the scheduler with an injected clock,
and `campaigns send --now`, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.models import CampaignRun, Delivery
from mailer.scheduler import due_firings
from mailer.services import Services
from tests import factories
from tests.conftest import EXAMPLE_CONFIG, ROOT, TEST_SECRET
from tests.integration.test_audience_scenarios import campaign

pytestmark = pytest.mark.integration


async def setup(client, keys, n=3, **campaign_kw):
    await client.post(
        "/api/v1/contacts/batch",
        headers=keys["shop"],
        json={
            "contacts": [
                factories.contact(f"p{i}@example.be", consents=[factories.consent()])
                for i in range(n)
            ]
        },
    )
    created = await client.post(
        "/api/v1/campaigns", json=campaign(**campaign_kw), headers=keys["marketer"]
    )
    return created.json()["id"]


async def act(client, keys, campaign_id, action, body=None):
    return await client.post(
        f"/api/v1/campaigns/{campaign_id}/{action}", json=body or {}, headers=keys["marketer"]
    )


async def test_lifecycle_transitions(app_client, keys):
    cid = await setup(app_client, keys)
    assert (await act(app_client, keys, cid, "resume")).status_code == 409
    scheduled = await act(app_client, keys, cid, "schedule", {"send_at": "2026-12-01T09:00:00Z"})
    assert scheduled.status_code == 200 and scheduled.json()["status"] == "scheduled"
    paused = await act(app_client, keys, cid, "pause")
    assert paused.json()["status"] == "paused"
    assert (await act(app_client, keys, cid, "resume")).json()["status"] == "scheduled"
    cancelled = await act(app_client, keys, cid, "cancel")
    assert cancelled.json()["status"] == "cancelled"
    again = await act(app_client, keys, cid, "schedule", {"send_at": "2026-12-01T09:00:00Z"})
    assert again.status_code == 409 and again.json()["extra"]["reason"] == "invalid_transition"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "not a cron"}, "cron"),
        ({"cron": "0 9 * * MON", "timezone": "Mars/Olympus"}, "timezone"),
        ({}, "send_at"),
        ({"send_at": "2026-12-01T09:00:00"}, "send_at"),
        ({"send_at": "2026-11-27T11:00:00Z"}, "send_at"),  # an hour ago
    ],
)
async def test_bad_schedules_are_422(app_client, keys, body, field):
    cid = await setup(app_client, keys, n=0)
    response = await act(app_client, keys, cid, "schedule", body)
    assert response.status_code == 422, response.text
    assert response.json()["extra"]["field"] == field


async def test_preview_is_what_the_contact_gets(app_client, keys):
    cid = await setup(app_client, keys, n=1)
    contact = (
        await app_client.post(
            "/api/v1/contacts", headers=keys["shop"], json=factories.contact("p0@example.be")
        )
    ).json()
    response = await act(app_client, keys, cid, "preview", {"contact_id": contact["id"]})
    assert response.status_code == 200
    preview = response.json()
    assert preview["subject"] == "Nieuws"
    assert preview["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "toestemming gaf voor onze nieuwsbrief" in preview["text"]
    assert "Reclame" in preview["html"]
    sample = await act(app_client, keys, cid, "preview")
    assert sample.status_code == 200
    nobody = (
        await app_client.post(
            "/api/v1/contacts", headers=keys["shop"], json=factories.contact("nobody@example.be")
        )
    ).json()
    refused = await act(app_client, keys, cid, "preview", {"contact_id": nobody["id"]})
    assert refused.status_code == 409 and refused.json()["extra"]["reason"] == "no_basis"


async def test_test_send_only_to_the_internal_list(app_client, keys, smtp):
    cid = await setup(app_client, keys, n=0)
    refused = await act(app_client, keys, cid, "test", {"emails": ["someone@example.be"]})
    assert refused.status_code == 422 and refused.json()["extra"]["field"] == "emails[0]"
    assert smtp.received == []
    sent = await act(app_client, keys, cid, "test", {"emails": ["QA@ollekebolleke.be"]})
    assert sent.status_code == 202 and sent.json() == {"sent": ["qa@ollekebolleke.be"]}
    (message,) = await smtp.wait_for(1)
    assert message.rcpt_tos == ["qa@ollekebolleke.be"]


def test_due_firings_of_a_recurring_campaign():
    from campaigns.models import Campaign

    weekly = Campaign(
        id="c",
        name="n",
        purpose="newsletter",
        subject="s",
        template="newsletter.html",
        status="scheduled",
        cron="0 9 * * MON",
        timezone="Europe/Brussels",
        updated_at=datetime(2026, 11, 1, tzinfo=UTC),
    )
    monday = datetime(2026, 11, 30, 8, 0, 30, tzinfo=UTC)  # 09:00:30 in Brussels
    (due,) = due_firings(weekly, monday, set())
    assert due == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert due_firings(weekly, monday, {due}) == []  # fired once
    assert due_firings(weekly, monday - timedelta(minutes=5), set()) == []  # not yet
    assert due_firings(weekly, monday + timedelta(hours=2), set()) == []  # past the grace
    weekly.updated_at = monday - timedelta(seconds=10)  # scheduled at 09:00:20
    assert due_firings(weekly, monday, set()) == []  # next Monday, not now


async def test_recurring_campaign_fires_on_schedule_once_per_firing(
    app_client, keys, settings, clock, services, smtp
):
    cid = await setup(app_client, keys, n=2)
    await act(
        app_client, keys, cid, "schedule", {"cron": "0 9 * * MON", "timezone": "Europe/Brussels"}
    )
    second = Services.build(settings, clock)
    workers = [services.worker(), second.worker()]
    try:
        clock.set(datetime(2026, 11, 30, 8, 0, 5, tzinfo=UTC))
        await asyncio.gather(*(w.tick() for w in workers))  # two schedulers fire at once
        await asyncio.gather(*(w.idle() for w in workers))
        assert len(smtp.received) == 2
        clock.set(datetime(2026, 12, 7, 8, 0, 5, tzinfo=UTC))  # next Monday
        for w in workers:
            await w.tick()
            await w.idle()
        assert len(smtp.received) == 4
    finally:
        for w in workers:
            await w.stop()
        await second.close()
    async with services.db.sessions() as session:
        runs = (await session.execute(sa.select(CampaignRun.scheduled_for))).scalars().all()
        per_run = (
            await session.execute(sa.select(Delivery.run, sa.func.count()).group_by(Delivery.run))
        ).all()
    assert sorted(runs) == [
        datetime(2026, 11, 30, 8, 0, tzinfo=UTC),
        datetime(2026, 12, 7, 8, 0, tzinfo=UTC),
    ]
    assert sorted(n for _, n in per_run) == [2, 2]


async def test_missed_one_off_runs_once_after_a_restart(app_client, keys, services, clock, smtp):
    cid = await setup(app_client, keys, n=1)
    await act(app_client, keys, cid, "schedule", {"send_at": "2026-11-27T12:30:00Z"})
    clock.set(datetime(2026, 11, 27, 13, 10, tzinfo=UTC))  # the worker was down at 12:30
    worker = services.worker()
    try:
        await worker.tick()
        await worker.idle()
        await worker.tick()
        await worker.idle()
    finally:
        await worker.stop()
    assert len(smtp.received) == 1
    detail = await app_client.get(f"/api/v1/campaigns/{cid}", headers=keys["marketer"])
    assert detail.json()["status"] == "done" and detail.json()["counts"]["sent"] == 1


@pytest.mark.parametrize("processes", [1, 3])
async def test_campaigns_send_now_command(app_client, keys, settings, smtp, tmp_path, processes):
    """With `processes = 3`, two helper processes share the run: still each recipient once."""
    people = 3 if processes == 1 else 24
    cid = await setup(app_client, keys, n=people)
    config = tmp_path / "mailer.toml"
    text = EXAMPLE_CONFIG.read_text().replace("processes = 1", f"processes = {processes}")
    config.write_text(text.replace("batch_size = 500", "batch_size = 2"))
    env = {
        **os.environ,
        "MAILER_DATABASE_URL": settings.database_url,
        "MAILER_CONFIG": str(config),
        "MAILER_SECRET_KEYS": TEST_SECRET.decode(),
        "MAILER_DEV": "1",
        "MAILER_SMTP_HOST": "127.0.0.1",
        "MAILER_SMTP_PORT": str(settings.smtp_port),
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mailer", "campaigns", "send", cid, "--now"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{people} sent, 0 failed, 0 skipped, 0 unknown" in result.stdout
    await smtp.wait_for(people)
    assert Counter(r for m in smtp.received for r in m.rcpt_tos) == {
        f"p{i}@example.be": 1 for i in range(people)
    }
