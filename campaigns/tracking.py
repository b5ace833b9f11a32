"""Tracking, only with consent (C35): which links of a campaign are tracked, what a click or an
open records, and the campaign's aggregate clicks.

Only a contact whose current consent for `tracking` stands gets rewritten links and the open
pixel (the composer asks `delivery_recipients`); everyone else gets the campaign's own links
and no pixel. A click is recorded for a person only while that consent still stands (a
withdrawal stops it from the next mail, and from the next click); the link's aggregate count
takes every person's click and names nobody.

Link scanners (a mail filter that fetches every link of a message on arrival, to check it) are
not people: a fetch is put down as a scanner's, and counted nowhere, when it
- is a HEAD request (a scanner checks where a link goes without reading it),
- comes with no user agent or one of a known scanner or HTTP library (`SCANNER_AGENTS`),
- comes within `ON_ARRIVAL` of the message being sent (no person reads that fast; filters
  check on arrival), or
- follows a click on another link of the same message within `BURST` (a scanner follows
  every link at once): the earlier click of that burst is taken back too.
Opens are recorded the same way, and never count as activity (C36): nothing reads them but
the campaign's report.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.audience.eligibility import PROFILE, SUPPRESSED, consent_event
from campaigns.context import Context
from campaigns.db import among, insert_ignoring_duplicates
from campaigns.models import Delivery, TrackedLink, TrackingEvent

TRACKING_PURPOSE = "tracking"
LINK = TrackedLink.__table__  # type: ignore[attr-defined]
EVENT = TrackingEvent.__table__  # type: ignore[attr-defined]
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]

ON_ARRIVAL = timedelta(seconds=10)
BURST = timedelta(seconds=2)
SCANNER_AGENTS = re.compile(
    r"bot\b|crawl|spider|scan|preview|safelinks|proofpoint|mimecast|barracuda|"
    r"python-|curl/|wget/|go-http-client|java/|okhttp|libwww|httpclient|headless",
    re.IGNORECASE,
)


def tracking_held() -> sa.ColumnElement[bool]:
    """Over the marketing profile: the contact's consent for `tracking` stands now and it is
    not suppressed (an objection ends all processing, C16)."""
    return sa.and_(consent_event(TRACKING_PURPOSE).is_not(None), ~SUPPRESSED)


async def record_links(
    session: AsyncSession, campaign_id: str, urls: Sequence[str]
) -> dict[str, int]:
    """The campaign's tracked links, stored once each: url -> link id. Idempotent (every
    sending process of a run calls it)."""
    if not urls:
        return {}
    rows = [{"campaign_id": campaign_id, "url": url} for url in dict.fromkeys(urls)]
    await insert_ignoring_duplicates(session, LINK, rows, ("campaign_id", "url"))
    found = await session.execute(
        sa.select(LINK.c.url, LINK.c.id).where(
            LINK.c.campaign_id == campaign_id, among(LINK.c.url, [r["url"] for r in rows], session)
        )
    )
    return {url: link_id for url, link_id in found.all()}


@dataclass(frozen=True)
class Fetch:
    """What the web request says of who fetched a tracked URL."""

    method: str
    user_agent: str


def scanner_reason(fetch: Fetch, sent_at: datetime | None, now: datetime) -> str | None:
    """Why this fetch is a link scanner's, not a person's; None for a person."""
    if fetch.method.upper() == "HEAD":
        return "head_request"
    if not fetch.user_agent.strip() or SCANNER_AGENTS.search(fetch.user_agent):
        return "scanner_agent"
    if sent_at is not None and now - sent_at < ON_ARRIVAL:
        return "on_arrival"
    return None


@dataclass(frozen=True)
class _Sent:
    contact_id: str
    campaign_id: str
    sent_at: datetime | None
    tracked: bool  # consent for tracking stands now


async def _delivery(session: AsyncSession, delivery_id: int) -> _Sent | None:
    """The delivery, locked until the transaction ends: a scanner fetches a message's links at
    once, and each fetch must see the ones before it to tell a burst (SQLite: one writer)."""
    row = (
        await session.execute(
            sa.select(
                DELIVERY.c.contact_id,
                DELIVERY.c.campaign_id,
                DELIVERY.c.sent_at,
                sa.select(tracking_held())
                .where(PROFILE.c.contact_id == DELIVERY.c.contact_id)
                .scalar_subquery(),
            )
            .where(DELIVERY.c.id == delivery_id)
            .with_for_update(of=DELIVERY)
        )
    ).first()
    if row is None:
        return None
    return _Sent(row[0], row[1], row[2], bool(row[3]))


async def follow_click(
    session: AsyncSession, delivery_id: int, link_id: int, fetch: Fetch, ctx: Context
) -> str | None:
    """Where a tracked link goes: the URL, if the link is one of the delivery's campaign
    (None: 404, never a redirect elsewhere). Records the click as above. Never commits."""
    sent = await _delivery(session, delivery_id)
    if sent is None:
        return None
    url = (
        await session.execute(
            sa.select(LINK.c.url).where(
                LINK.c.id == link_id, LINK.c.campaign_id == sent.campaign_id
            )
        )
    ).scalar_one_or_none()
    if url is None:
        return None
    now = ctx.clock.now()
    scanner = scanner_reason(fetch, sent.sent_at, now)
    if scanner is None and await _burst(session, delivery_id, link_id, now):
        scanner = "burst"
    if scanner is None:
        await session.execute(
            sa.update(LINK).where(LINK.c.id == link_id).values(clicks=LINK.c.clicks + 1)
        )
    if sent.tracked:
        await _record(session, delivery_id, sent, "click", now, scanner, link_id)
    return str(url)


async def _burst(session: AsyncSession, delivery_id: int, link_id: int, now: datetime) -> bool:
    """A click on another link of the message just before this one: both were a scanner's.
    The earlier ones are taken back from their links' counts."""
    burst = [
        EVENT.c.delivery_id == delivery_id,
        EVENT.c.kind == "click",
        EVENT.c.at > now - BURST,
        EVENT.c.link_id != link_id,
    ]
    earlier = await session.execute(sa.select(sa.func.count()).where(*burst))
    if not earlier.scalar_one():
        return False
    taken_back = await session.execute(
        sa.update(EVENT)
        .where(*burst, EVENT.c.scanner.is_(None))
        .values(scanner="burst")
        .returning(EVENT.c.link_id)
    )
    for taken in taken_back.scalars().all():
        await session.execute(
            sa.update(LINK).where(LINK.c.id == taken).values(clicks=LINK.c.clicks - 1)
        )
    return True


async def record_open(session: AsyncSession, delivery_id: int, fetch: Fetch, ctx: Context) -> None:
    """The open pixel was fetched: an event, for a person whose tracking consent stands.
    Never commits."""
    sent = await _delivery(session, delivery_id)
    if sent is None or not sent.tracked:
        return
    now = ctx.clock.now()
    await _record(session, delivery_id, sent, "open", now, scanner_reason(fetch, sent.sent_at, now))


async def _record(
    session: AsyncSession,
    delivery_id: int,
    sent: _Sent,
    kind: str,
    at: datetime,
    scanner: str | None,
    link_id: int | None = None,
) -> None:
    """A person's event: only for a contact whose tracking consent stands (the callers ask)."""
    await session.execute(
        sa.insert(EVENT).values(
            delivery_id=delivery_id,
            contact_id=sent.contact_id,
            campaign_id=sent.campaign_id,
            kind=kind,
            link_id=link_id,
            at=at,
            scanner=scanner,
        )
    )


@dataclass(frozen=True)
class LinkClicks:
    url: str
    clicks: int  # people's clicks, everyone's (scanners' not)
    people: int  # distinct people among those whose events are kept (tracking consent)


@dataclass(frozen=True)
class CampaignClicks:
    campaign_id: str
    links: list[LinkClicks]
    opens: int  # people who opened, among those who consented (an open is not activity: C36)
    scanner_fetches: int  # fetches put down as link scanners', counted nowhere


async def campaign_clicks(session: AsyncSession, campaign_id: str) -> CampaignClicks:
    people = (
        sa.select(EVENT.c.link_id, sa.func.count(sa.distinct(EVENT.c.contact_id)).label("n"))
        .where(
            EVENT.c.campaign_id == campaign_id, EVENT.c.kind == "click", EVENT.c.scanner.is_(None)
        )
        .group_by(EVENT.c.link_id)
        .subquery()
    )
    links = await session.execute(
        sa.select(LINK.c.url, LINK.c.clicks, sa.func.coalesce(people.c.n, 0))
        .select_from(LINK.outerjoin(people, people.c.link_id == LINK.c.id))
        .where(LINK.c.campaign_id == campaign_id)
        .order_by(LINK.c.id)
    )
    opens = await session.execute(
        sa.select(sa.func.count(sa.distinct(EVENT.c.contact_id))).where(
            EVENT.c.campaign_id == campaign_id, EVENT.c.kind == "open", EVENT.c.scanner.is_(None)
        )
    )
    scanners = await session.execute(
        sa.select(sa.func.count()).where(
            EVENT.c.campaign_id == campaign_id, EVENT.c.scanner.is_not(None)
        )
    )
    return CampaignClicks(
        campaign_id,
        [LinkClicks(url, clicks, n) for url, clicks, n in links.all()],
        int(opens.scalar_one()),
        int(scanners.scalar_one()),
    )
