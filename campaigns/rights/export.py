"""The access and portability document (C32): everything the service holds about a person, as
one JSON document, walked from the registry. Versioned: field names are the registry's, and a
change of them is a new version."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.clock import Clock
from campaigns.errors import NotFound
from campaigns.models import Campaign, Contact, RightsRequest, TrackedLink
from campaigns.objections import Addressee
from campaigns.rights.registry import HOLDINGS, People
from campaigns.rights.requests import log_request
from campaigns.suppression.entries import suppression_status
from campaigns.suppression.hashing import AddressHasher

FORMAT, VERSION = "permission-mailer/contact-export", 1
CAMPAIGN = Campaign.__table__  # type: ignore[attr-defined]
REQUESTS = RightsRequest.__table__  # type: ignore[attr-defined]
LINK = TrackedLink.__table__  # type: ignore[attr-defined]


async def export_contact(
    session: AsyncSession,
    contact_id: str,
    *,
    clock: Clock,
    hasher: AddressHasher,
    channel: str,
    actor: str,
) -> dict[str, Any]:
    """The document for one contact; the request is logged first (it is part of what the
    person sees). Never commits."""
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"no contact {contact_id}")
    await log_request(session, contact_id, kind="export", channel=channel, actor=actor, clock=clock)
    person = People.one(contact.id, contact.email)
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": _value(clock.now()),
    }
    for holding in HOLDINGS:
        if holding.exported_as is None:
            continue
        columns = [holding.table.c[name] for name in holding.fields]
        order = [c for c in holding.table.primary_key.columns]
        rows = await session.execute(
            sa.select(*columns).where(holding.rows(person)).order_by(*order)
        )
        found = [
            {name: _value(value) for name, value in zip(holding.fields, row, strict=True)}
            for row in rows.all()
        ]
        document[holding.exported_as] = found[0] if holding.exported_as == "contact" else found
    campaign_ids = sorted({d["campaign_id"] for d in document.get("deliveries", [])})
    names = await session.execute(
        sa.select(CAMPAIGN.c.id, CAMPAIGN.c.name).where(CAMPAIGN.c.id.in_(campaign_ids))
    )
    document["campaigns"] = {row.id: row.name for row in names.all()}
    link_ids = sorted({e["link_id"] for e in document.get("tracking_events", []) if e["link_id"]})
    links = await session.execute(sa.select(LINK.c.id, LINK.c.url).where(LINK.c.id.in_(link_ids)))
    document["tracked_links"] = {str(row.id): row.url for row in links.all()}
    status = await suppression_status(session, contact.email, hasher)
    document["suppression"] = {
        "suppressed": status.suppressed,
        "since": _value(status.since),
        "entries": [
            {
                "reason": e.reason,
                "channel": e.channel,
                "created_at": _value(e.created_at),
                "lifted_at": _value(e.lifted_at),
            }
            for e in status.entries
        ],
    }
    return document


EXPORT_EVERY = timedelta(hours=24)  # a person's own export: at most one mail per day


async def export_for_the_person(
    session: AsyncSession, contact_id: str, *, clock: Clock, hasher: AddressHasher
) -> tuple[Addressee, dict[str, Any] | None]:
    """The person's own request from the preference page (C38): whom to mail the document
    (the contact's address, never the page), and the document, or None when one went out in
    the last day (a link in a forwarded mail must not make a mail bomb). Never commits."""
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"no contact {contact_id}")
    addressee = Addressee(contact.email, contact.name, contact.locale)
    recent = await session.execute(
        sa.select(sa.func.count())
        .select_from(REQUESTS)
        .where(
            REQUESTS.c.contact_id == contact_id,
            REQUESTS.c.kind == "export",
            REQUESTS.c.channel == "page",
            REQUESTS.c.requested_at > clock.now() - EXPORT_EVERY,
        )
    )
    if recent.scalar_one():
        return addressee, None
    document = await export_contact(
        session, contact_id, clock=clock, hasher=hasher, channel="page", actor="the person"
    )
    return addressee, document


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode("ascii")}
    return value
