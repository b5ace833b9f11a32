"""What an operator sees, on SQLite and PostgreSQL: `/health`, `/ready`, `/metrics` (Prometheus,
behind its own scope), logs as JSON lines when asked and quiet libraries, and a whole campaign
with an unsubscribe and a bounce that leaves no address, token or key in any log line
(DESIGN invariant 7)."""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from campaigns.apikeys import create_key
from mailer.db import Database
from mailer.logs import JsonLines, quiet_libraries
from mailer.web.operations import Readiness, _checks
from tests import reports
from tests.integration.test_dispatch import fire, new_campaign, people, send
from tests.integration.test_recipient_flows import one_click_url
from tests.integration.test_returns import decided, mail_report

pytestmark = pytest.mark.integration


async def test_health_and_ready_on_a_running_server(server):
    async with httpx.AsyncClient(base_url=server) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok", "migrations": "ok"}


async def test_ready_says_what_is_not(tmp_path, services):
    unmigrated = Database(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        checks = await _checks(unmigrated, Readiness(True, lambda: False))
    finally:
        await unmigrated.close()
    assert checks == {"database": "ok", "migrations": "at None, not head", "listener": "down"}
    listening = await _checks(services.db, Readiness(True, lambda: True))
    assert listening == {"database": "ok", "migrations": "ok", "listener": "ok"}


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no {name} {labels} in the metrics")


async def test_metrics_count_what_happened_behind_their_own_scope(
    world, smtp, listener, app_client, keys, clock
):
    await people(world, 2)
    campaign_id = await new_campaign(world)
    await send(world, campaign_id, await fire(world, campaign_id))
    first, second = sorted(smtp.received, key=lambda r: r.rcpt_tos[0])
    await app_client.post(
        one_click_url(first.message),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    await mail_report(
        listener[1], second.mail_from, reports.dsn(status="5.1.1", verp=second.mail_from)
    )
    await decided(listener)

    assert (await app_client.get("/metrics")).status_code == 401
    assert (await app_client.get("/metrics", headers=keys["shop"])).status_code == 403
    key, _ = await world.db.transaction(
        lambda s: create_key(s, scope="metrics", name="prometheus", clock=clock)
    )
    scraped = await app_client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    assert metric(text, "mailer_messages", outcome="sent") == 1
    assert metric(text, "mailer_messages", outcome="bounced") == 1
    assert metric(text, "mailer_suppressions", reason="unsubscribe", channel="one_click") == 1
    assert metric(text, "mailer_suppressions", reason="hard_bounce", channel="bounce") == 1
    assert metric(text, "mailer_returns", kind="hard_bounces") == 1
    assert metric(text, "mailer_send_rate") == 2 / 60  # both sent in the last minute
    assert metric(text, "mailer_scheduler_lag_seconds") == 0
    assert metric(text, "mailer_one_click_seconds_count") >= 1
    assert "@example.be" not in text


async def test_invariant_7_a_whole_campaign_leaves_no_address_token_or_key_in_the_logs(
    world, smtp, listener, app_client, keys, caplog
):
    quiet_libraries()
    caplog.set_level(logging.INFO)
    await people(world, 3)
    campaign_id = await new_campaign(world)
    await send(world, campaign_id, await fire(world, campaign_id))
    mails = sorted(smtp.received, key=lambda r: r.rcpt_tos[0])
    unsubscribe = one_click_url(mails[0].message)
    await app_client.post(
        unsubscribe,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    await app_client.get(f"/api/v1/campaigns/{campaign_id}", headers=keys["marketer"])
    bounced = mails[1].mail_from
    await mail_report(listener[1], bounced, reports.dsn(status="5.1.1", verp=bounced))
    await decided(listener)

    secrets = {
        "an address": r"p\d@example\.be",
        "a token": "|".join(
            re.escape(t)
            for t in (
                unsubscribe.rsplit("/", 1)[1],
                bounced.split("+", 1)[1].split("@")[0],
                mails[0].message["Message-ID"].strip("<>").split("@")[0],
            )
        ),
        "a key": "|".join(re.escape(h["Authorization"].split()[1]) for h in keys.values()),
    }
    # The test's own HTTP client (httpx) logs the URLs it asks for: that is the mailbox
    # provider's side, not the service's log.
    service = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    lines = [JsonLines().format(record) for record in service]
    assert lines, "the campaign logged nothing at all"
    for line in lines:
        json.loads(line)  # every line is one JSON object
        for what, pattern in secrets.items():
            assert not re.search(pattern, line, re.IGNORECASE), f"{what} in the log: {line}"
    noisy = [r.name for r in caplog.records if r.name.startswith(("apscheduler", "mail.log"))]
    assert not noisy
