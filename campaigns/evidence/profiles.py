"""Reading a contact back (profile, ledger, bases) and recording a single consent decision."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from campaigns.addresses import normalise_address
from campaigns.audience.eligibility import Basis, current_bases
from campaigns.context import Context
from campaigns.errors import InvalidInput, NotFound
from campaigns.evidence.consent import consent_row
from campaigns.evidence.contacts import Refusal
from campaigns.evidence.inputs import ConsentEvidenceIn, ConsentIn
from campaigns.evidence.projections import append_consent_events
from campaigns.models import ConsentEvent, Contact, OrderCategory, ShopOrder
from campaigns.suppression.entries import suppressed_among


@dataclass(frozen=True)
class ContactSource:
    """Where the shop collected the address: only first-party collection is stored (C11)."""

    channel: str
    url: str | None
    first_party: bool = True


@dataclass(frozen=True)
class ContactView:
    """A contact with the legal bases it holds now, and what a push gave no basis, and why."""

    id: str
    email: str
    external_id: str | None
    name: str | None
    locale: str | None
    source: ContactSource
    created_at: datetime
    updated_at: datetime
    suppressed: bool
    bases: tuple[Basis, ...]
    refused: tuple[Refusal, ...]


@dataclass(frozen=True)
class ConsentEventView:
    """One event of the consent ledger, as captured, with whether it gives a basis."""

    id: str
    purpose: str
    granted: bool
    captured_at: datetime | None
    wording: str | None
    wording_version: str | None
    channel: str | None
    url: str | None
    ip: str | None
    checkbox_prechecked: bool | None
    capture_method: str
    valid: bool
    refused_reason: str | None
    recorded_at: datetime


@dataclass(frozen=True)
class OrderView:
    id: str
    placed_at: datetime
    status: str
    categories: tuple[str, ...]
    marketing_opt_out_offered: bool
    marketing_opt_out_used: bool


@dataclass(frozen=True)
class ContactDetail(ContactView):
    """Profile, consent ledger, orders, current bases and suppression status."""

    consents: tuple[ConsentEventView, ...]
    orders: tuple[OrderView, ...]


@dataclass(frozen=True)
class RecordedConsent:
    """One consent decision appended to the ledger, and the bases the contact holds after it."""

    contact_id: str
    consent_event_id: str
    valid: bool
    refused_reason: str | None
    bases: tuple[Basis, ...]


async def get_contact(session: AsyncSession, contact_id: str) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound("no contact with this id")
    return contact


async def contact_view(
    session: AsyncSession, contact_id: str, ctx: Context, refused: list[Refusal] | None = None
) -> ContactView:
    contact = await get_contact(session, contact_id)
    return ContactView(**await _summary(session, contact, ctx, refused or []))


async def contact_detail(session: AsyncSession, contact_id: str, ctx: Context) -> ContactDetail:
    contact = await get_contact(session, contact_id)
    events = (
        await session.execute(
            sa.select(ConsentEvent)
            .where(col(ConsentEvent.contact_id) == contact_id)
            .order_by(col(ConsentEvent.captured_at), col(ConsentEvent.id))
        )
    ).scalars()
    orders = (
        (
            await session.execute(
                sa.select(ShopOrder)
                .where(col(ShopOrder.contact_id) == contact_id)
                .order_by(col(ShopOrder.placed_at))
            )
        )
        .scalars()
        .all()
    )
    categories: dict[str, list[str]] = defaultdict(list)
    for order_id, category in await session.execute(
        sa.select(col(OrderCategory.order_id), col(OrderCategory.category))
        .where(col(OrderCategory.order_id).in_([o.id for o in orders]))
        .order_by(col(OrderCategory.category))
    ):
        categories[order_id].append(category)
    return ContactDetail(
        **await _summary(session, contact, ctx, []),
        consents=tuple(
            ConsentEventView(
                id=str(event.id),
                purpose=event.purpose,
                granted=event.granted,
                captured_at=event.captured_at,
                wording=event.wording,
                wording_version=event.wording_version,
                channel=event.channel,
                url=event.url,
                ip=event.ip,
                checkbox_prechecked=event.checkbox_prechecked,
                capture_method=event.capture_method,
                valid=event.valid,
                refused_reason=event.refused_reason,
                recorded_at=event.recorded_at,
            )
            for event in events
        ),
        orders=tuple(
            OrderView(
                id=order.id,
                placed_at=order.placed_at,
                status=order.status,
                categories=tuple(categories[order.id]),
                marketing_opt_out_offered=order.opt_out_offered,
                marketing_opt_out_used=order.opt_out_used,
            )
            for order in orders
        ),
    )


async def _summary(
    session: AsyncSession, contact: Contact, ctx: Context, refused: list[Refusal]
) -> dict[str, Any]:
    """The fields of a ContactView (a ContactDetail has them too)."""
    bases = await current_bases(
        session,
        [contact.id],
        clock=ctx.clock,
        policy=ctx.config.marketing,
    )
    suppressed = bool(await suppressed_among(session, [contact.email], ctx.hasher))
    return {
        "id": contact.id,
        "email": contact.email,
        "external_id": contact.external_id,
        "name": contact.name,
        "locale": contact.locale,
        "source": ContactSource(channel=contact.source_channel, url=contact.source_url),
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
        "suppressed": suppressed,
        "bases": tuple(bases[contact.id]),
        "refused": tuple(refused),
    }


async def record_consent(
    session: AsyncSession, request: ConsentIn, ctx: Context
) -> tuple[RecordedConsent, bool]:
    """Append one grant or withdrawal to the ledger (C31). Returns (result, newly_stored)."""
    if request.purpose not in ctx.config.marketing.purposes:
        raise InvalidInput(
            f"unknown purpose '{request.purpose}'", field="purpose", reason="unknown_purpose"
        )
    if (request.email is None) == (request.contact_id is None):
        raise InvalidInput("give exactly one of email or contact_id", field="email")
    lookup = (
        col(Contact.email) == request.email
        if request.email is not None
        else col(Contact.id) == request.contact_id
    )
    contact = (await session.execute(sa.select(Contact).where(lookup))).scalar_one_or_none()
    if contact is None:
        raise NotFound("no contact with this email or id; push the contact first")
    evidence = request.model_dump(exclude={"email", "contact_id"})
    row = consent_row(
        ConsentEvidenceIn.model_validate(evidence),
        contact_id=contact.id,
        now=ctx.clock.now(),
    )
    existing = await _event_id(session, contact.id, row["fingerprint"])
    if existing is None:
        await append_consent_events(session, [row])
    event_id = existing or await _event_id(session, contact.id, row["fingerprint"])
    bases = await current_bases(session, [contact.id], clock=ctx.clock, policy=ctx.config.marketing)
    return (
        RecordedConsent(
            contact_id=contact.id,
            consent_event_id=str(event_id),
            valid=row["valid"],
            refused_reason=row["refused_reason"],
            bases=tuple(bases[contact.id]),
        ),
        existing is None,
    )


async def _event_id(session: AsyncSession, contact_id: str, fingerprint: str) -> int | None:
    return (
        await session.execute(
            sa.select(col(ConsentEvent.id)).where(
                col(ConsentEvent.contact_id) == contact_id,
                col(ConsentEvent.fingerprint) == fingerprint,
            )
        )
    ).scalar_one_or_none()


async def find_contacts(session: AsyncSession, query: str, limit: int = 20) -> list[Contact]:
    """Contacts by address (exactly, normalised) or by the shop's external id: the console's
    lookup. Nothing for an empty query."""
    query = query.strip()
    if not query:
        return []
    wanted = [col(Contact.external_id) == query]
    if "@" in query:
        with contextlib.suppress(ValueError):  # not an address: the external id only
            wanted.append(col(Contact.email) == normalise_address(query))
    found = await session.execute(sa.select(Contact).where(sa.or_(*wanted)).limit(limit))
    return list(found.scalars())
