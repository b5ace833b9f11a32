"""The acknowledgements of opt-outs (C15) as a durable outbox: a row in the objection's own
transaction, claimed by whoever sends it (a lease: a sender that died leaves its claim to the
next), marked sent after the relay took it. At least once: a crash between the relay's yes and
the mark sends that one mail again; never none."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.clock import Clock
from campaigns.db import dialect_name
from campaigns.models import Acknowledgement, Contact

ACK = Acknowledgement.__table__  # type: ignore[attr-defined]
CONTACT = Contact.__table__  # type: ignore[attr-defined]
LEASE = timedelta(seconds=60)  # a claim older than this was a sender's that stopped
MAX_ATTEMPTS = 10  # then it is left, unsent, for an operator to see
BATCH = 200


async def add_acknowledgements(
    session: AsyncSession, contact_ids: Sequence[str], clock: Clock
) -> list[int]:
    """The acknowledgements to send for these opt-outs, one per contact; their ids, in the
    contacts' order. They are claimed already, by the process that took the objections and
    sends them right after (no second transaction); should that process stop first, the
    lease runs out and a worker takes them. Never commits."""
    now = clock.now()
    rows = [
        {"contact_id": contact_id, "created_at": now, "claimed_at": now, "attempts": 1}
        for contact_id in contact_ids
    ]
    added = await session.execute(
        sa.insert(ACK).returning(ACK.c.id, sort_by_parameter_order=True), rows
    )
    return list(added.scalars())


async def claim_acknowledgements(
    session: AsyncSession, clock: Clock, ids: Sequence[int] | None = None, limit: int = BATCH
) -> list[tuple[int, str, str | None, str | None]]:
    """Take unsent acknowledgements (these, or any that are due) for sending: (id, email, name,
    locale) each. One claim per lease: two senders never take the same one at once."""
    now = clock.now()
    due = sa.and_(
        ACK.c.sent_at.is_(None),
        sa.or_(ACK.c.claimed_at.is_(None), ACK.c.claimed_at < now - LEASE),
        ACK.c.attempts < MAX_ATTEMPTS,
    )
    chosen = sa.select(ACK.c.id).where(due).order_by(ACK.c.id).limit(limit)
    if ids is not None:
        chosen = chosen.where(ACK.c.id.in_(list(ids)))
    if dialect_name(session) == "postgresql":
        chosen = chosen.with_for_update(skip_locked=True)
    claimed = await session.execute(
        sa.update(ACK)
        .where(ACK.c.id.in_(chosen), due)
        .values(claimed_at=now, attempts=ACK.c.attempts + 1)
        .returning(ACK.c.id, ACK.c.contact_id)
    )
    rows = claimed.all()
    if not rows:
        return []
    contacts = await session.execute(
        sa.select(CONTACT.c.id, CONTACT.c.email, CONTACT.c.name, CONTACT.c.locale).where(
            CONTACT.c.id.in_([contact_id for _, contact_id in rows])
        )
    )
    who = {row.id: row for row in contacts.all()}
    return [
        (ack_id, who[contact_id].email, who[contact_id].name, who[contact_id].locale)
        for ack_id, contact_id in sorted(rows)
        if contact_id in who
    ]


async def mark_sent(session: AsyncSession, ids: Sequence[int], clock: Clock) -> None:
    if ids:
        await session.execute(
            sa.update(ACK).where(ACK.c.id.in_(list(ids))).values(sent_at=clock.now())
        )
