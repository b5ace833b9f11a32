"""`Worker.stop(drain_seconds=...)` against a real database (SQLite and PostgreSQL) and a real
SMTP server made slow or stalled (tests/smtp.py `data_delay`): running dispatches are told to
stop, the batch in hand is finished and recorded, and what cannot finish in `drain_seconds` is
cancelled (DESIGN invariant 6: only what was in flight can become `unknown`)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaigns.models import Campaign, CampaignRun
from campaigns.sending import lifecycle
from campaigns.sending.ledger import recover_in_flight
from mailer.scheduler import Worker, cron_trigger
from mailer.services import Services
from tests.conftest import NOW
from tests.integration.test_dispatch import new_campaign, people, recipients, statuses

pytestmark = pytest.mark.integration
# Batches of two over one connection: a batch's two messages go out one after the other.
SLOW = {"retry_base_seconds": 0, "error_budget": 3, "batch_size": 2, "connections": 1}


def make_worker(services: Services) -> Worker:
    """The one place this module builds a Worker: as the composition root does."""
    return services.worker()


@pytest.fixture
async def world(settings, clock, services) -> AsyncIterator[Services]:
    """Services with small batches and one SMTP connection; tables emptied by `services`."""
    delivery = dataclasses.replace(settings.business.delivery, **SLOW)
    business = dataclasses.replace(settings.business, delivery=delivery)
    built = Services.build(dataclasses.replace(settings, business=business), clock)
    yield built
    await built.close()


async def scheduled_campaign(services: Services, contacts: int) -> str:
    """A campaign to `contacts` people, due now: the worker's first tick fires it."""
    await people(services, contacts)
    campaign_id = await new_campaign(services)
    await services.db.transaction(
        lambda s: lifecycle.schedule(
            s,
            campaign_id,
            send_at=NOW,
            cron=None,
            timezone=None,
            parse_cron=cron_trigger,
            ctx=services.context,
        )
    )
    return campaign_id


async def until(condition, within: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def timed_stop(worker: Worker, drain_seconds: float, limit: float = 15) -> float:
    """`worker.stop(drain_seconds)`; how long it took (a failure past `limit` seconds)."""
    began = time.monotonic()
    try:
        await asyncio.wait_for(worker.stop(drain_seconds=drain_seconds), limit)
    except TimeoutError:
        pytest.fail(f"stop(drain_seconds={drain_seconds}) had not returned after {limit} s")
    return time.monotonic() - began


async def run_status(services: Services, campaign_id: str) -> tuple[str, list[str]]:
    async with services.db.sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        runs = await session.execute(
            sa.select(CampaignRun.status).where(CampaignRun.campaign_id == campaign_id)
        )
        return campaign.status, list(runs.scalars())


async def test_stop_lets_a_dispatch_finish_its_batch_and_nothing_becomes_unknown(world, smtp):
    campaign_id = await scheduled_campaign(world, 12)
    smtp.data_delay = 0.2  # a batch takes about 0.4 s
    worker = make_worker(world)
    await worker.start()
    try:
        await until(lambda: len(smtp.received) >= 1)  # in the middle of the first batch
    finally:
        stopped_in = await timed_stop(worker, drain_seconds=20, limit=30)
    assert stopped_in < 10  # it returned when the dispatch did, not at drain_seconds
    (task,) = worker.dispatching.values()
    assert task.done() and not task.cancelled() and task.exception() is None

    counts = await statuses(world, campaign_id)
    sent = counts["sent"]
    assert set(counts) <= {"sent", "queued"}, counts  # none unknown, none left claimed
    assert sent + counts["queued"] == 12
    # The batch in hand, then it stopped: the one composed meanwhile is queued again.
    assert sent == 2, counts
    assert sum(recipients(smtp).values()) == sent  # what was sent is what the server has
    assert await run_status(world, campaign_id) == ("sending", ["sending"])  # the run is open

    smtp.data_delay = 0
    restarted = make_worker(world)  # the next worker sends the rest, each once
    await restarted.start()
    try:
        await asyncio.wait_for(restarted.idle(), 30)
    finally:
        await restarted.stop()
    assert recipients(smtp) == {f"p{i}@example.be": 1 for i in range(12)}
    assert await statuses(world, campaign_id) == {"sent": 12}
    assert await run_status(world, campaign_id) == ("done", ["done"])


async def test_stop_cancels_a_dispatch_that_cannot_finish_after_drain_seconds(world, smtp, clock):
    campaign_id = await scheduled_campaign(world, 4)
    smtp.data_delay = 60  # the relay stalls on the first message
    worker = make_worker(world)
    await worker.start()
    try:
        await until(lambda: smtp.data_started >= 1)  # the relay holds the first message
    finally:
        stopped_in = await timed_stop(worker, drain_seconds=1)
    assert 1 <= stopped_in < 3, stopped_in  # about drain_seconds
    (task,) = worker.dispatching.values()
    assert task.cancelled()
    assert smtp.received == []  # the relay never said it took the message

    # The batch in hand stays in flight (its outcome is not known); the rest is queued again.
    assert await statuses(world, campaign_id) == {"sending": 2, "queued": 2}
    clock.advance(timedelta(seconds=world.context.config.delivery.lease_seconds * 2))
    assert await world.db.transaction(lambda s: recover_in_flight(s, world.context)) == 2
    assert await statuses(world, campaign_id) == {"unknown": 2, "queued": 2}  # never resent
