"""Reading a contact back (profile, ledger, bases) and recording a single consent decision."""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from campaigns.audience.eligibility import Basis, current_bases
from campaigns.context import Context
from campaigns.errors import InvalidInput, NotFound
from campaigns.evidence.consent import consent_row
from campaigns.evidence.contacts import Refusal
from campaigns.evidence.projections import append_consent_events
from campaigns.models import ConsentEvent, Contact, OrderCategory, ShopOrder
from campaigns.schemas import (
    BasisOut,
    ConsentEventOut,
    ConsentEvidenceIn,
    ConsentIn,
    ConsentOut,
    ContactDetailOut,
    ContactOut,
    OrderOut,
    RefusedOut,
    SourceOut,
)
from campaigns.suppression.entries import suppressed_among


async def get_contact(session: AsyncSession, contact_id: str) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound("no contact with this id")
    return contact


async def contact_view(
    session: AsyncSession, contact_id: str, ctx: Context, refused: list[Refusal] | None = None
) -> ContactOut:
    contact = await get_contact(session, contact_id)
    return ContactOut(**await _summary(session, contact, ctx, refused or []))


async def contact_detail(session: AsyncSession, contact_id: str, ctx: Context) -> ContactDetailOut:
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
    return ContactDetailOut(
        **await _summary(session, contact, ctx, []),
        consents=[
            ConsentEventOut(
                **event.model_dump(exclude={"id", "contact_id", "fingerprint"}), id=str(event.id)
            )
            for event in events
        ],
        orders=[
            OrderOut(
                id=order.id,
                placed_at=order.placed_at,
                status=order.status,
                categories=categories[order.id],
                marketing_opt_out_offered=order.opt_out_offered,
                marketing_opt_out_used=order.opt_out_used,
            )
            for order in orders
        ],
    )


async def _summary(
    session: AsyncSession, contact: Contact, ctx: Context, refused: list[Refusal]
) -> dict[str, object]:
    bases = await current_bases(
        session,
        [contact.id],
        clock=ctx.clock,
        policy=ctx.config.marketing,
        hasher=ctx.hasher,
    )
    suppressed = bool(await suppressed_among(session, [contact.email], ctx.hasher))
    return {
        "id": contact.id,
        "email": contact.email,
        "external_id": contact.external_id,
        "name": contact.name,
        "locale": contact.locale,
        "source": SourceOut(channel=contact.source_channel, url=contact.source_url),
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
        "suppressed": suppressed,
        "bases": [basis_out(basis) for basis in bases[contact.id]],
        "refused": [RefusedOut(item=r.item, reason=r.reason) for r in refused],
    }


def basis_out(basis: Basis) -> BasisOut:
    return BasisOut(
        kind=basis.kind,
        purpose=basis.purpose,
        since=basis.since,
        categories=list(basis.categories) if basis.categories is not None else None,
        until=basis.until,
        consent_event_id=basis.consent_event_id,
        order_id=basis.order_id,
    )


async def record_consent(
    session: AsyncSession, request: ConsentIn, ctx: Context
) -> tuple[ConsentOut, bool]:
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
    bases = await current_bases(
        session, [contact.id], clock=ctx.clock, policy=ctx.config.marketing, hasher=ctx.hasher
    )
    return (
        ConsentOut(
            contact_id=contact.id,
            consent_event_id=str(event_id),
            valid=row["valid"],
            refused_reason=row["refused_reason"],
            bases=[basis_out(b) for b in bases[contact.id]],
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
