"""Previews and test sends: the same composer, the same bytes a contact would get."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.audience.audience import Explanation, explain, load_target
from campaigns.context import Context
from campaigns.errors import Conflict
from campaigns.models import Contact, Delivery
from campaigns.sending.campaigns import delivery_recipients
from mailer.delivery.compose import Composed, Composers, Recipient, recipient_of
from mailer.delivery.footer import MailBasis

STAND_IN_CONTACT = "0" * 32  # a preview's or test's contact id: its links reach nobody


def previewed_contact(contact: Contact, why: Explanation) -> Recipient:
    """A real contact as a preview shows it: their address, name, language and the basis they
    hold, but stand-in ids, so the preview's unsubscribe and preference links (which work
    without a login) act on nobody: a preview never hands its reader a person's powers."""
    basis = why.basis
    if not why.eligible or basis is None:
        raise Conflict(
            f"this contact would not receive the campaign: {why.reason}",
            field="contact_id",
            reason=why.reason,
        )
    return Recipient(
        delivery_id=0,
        contact_id=STAND_IN_CONTACT,
        email=contact.email,
        name=contact.name,
        locale=contact.locale,
        basis=MailBasis(
            basis.kind,
            basis.captured_at or basis.placed_at,  # type: ignore[arg-type]
            basis.purpose,
            tuple(basis.categories or ()),
        ),
    )


def sample_recipient(email: str, locale: str | None = None) -> Recipient:
    """A stand-in contact for a preview without one, or a test send (delivery 0: its links
    map to nothing, so a test mail cannot unsubscribe anybody)."""
    from datetime import UTC, datetime

    return Recipient(
        delivery_id=0,
        contact_id=STAND_IN_CONTACT,
        email=email,
        name=None,
        locale=locale,
        basis=MailBasis("consent", datetime.now(UTC), purpose="newsletter"),
    )


async def compose_preview(
    session: AsyncSession,
    composers: Composers,
    ctx: Context,
    campaign_id: str,
    contact_id: str | None,
) -> Composed:
    campaign, _ = await load_target(session, campaign_id)
    composer = composers.for_campaign(campaign)
    if contact_id is None:
        return composer.compose(sample_recipient(ctx.config.sender.contact_email))
    # As the contact's own delivery was composed, if one exists (its basis), else as it would
    # be; stand-in ids either way: a preview's links act on nobody.
    delivery_id = (
        await session.execute(
            sa.select(Delivery.id)  # type: ignore[call-overload]
            .where(Delivery.campaign_id == campaign_id, Delivery.contact_id == contact_id)
            .order_by(Delivery.id.desc())  # type: ignore[union-attr]
            .limit(1)
        )
    ).scalar_one_or_none()
    if delivery_id is not None:
        (row,) = await delivery_recipients(session, [delivery_id])
        shown = dataclasses.replace(recipient_of(row), delivery_id=0, contact_id=STAND_IN_CONTACT)
        return composer.compose(shown)
    why = await explain(session, contact_id, campaign_id, ctx)
    contact = await session.get(Contact, contact_id)
    assert contact is not None
    return composer.compose(previewed_contact(contact, why))
