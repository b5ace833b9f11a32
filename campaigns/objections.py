"""An objection to all marketing (an unsubscribe) in two steps, so the channel that mailbox
providers call in bursts (one-click, RFC 8058) answers fast and loses nothing.

1. `take_objection`, before the answer: the person's open deliveries stopped (waiting for a
   handoff under way: nothing is handed over after the commit, C13) and the suppression entry
   (C14), marked `follow_up_due`. From its commit on, the claim and the handoff read the list
   itself (sending/ledger.py), so nobody is mailed while the rest is still to do.
2. `follow_up_objections`, right after, by the process that took them or by a worker (what a
   restart left): what derives from the entry, for a batch of them in a few statements: the
   profiles' flag, the open deliveries stopped again (some may have been queued since), the
   withdrawal of every purpose in the ledger (C31) and the acknowledgement in its outbox
   (C15). One transaction per batch, so an entry is followed up once or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.acknowledgements import add_acknowledgements
from campaigns.addresses import normalise_address
from campaigns.context import Context
from campaigns.db import among, dialect_name
from campaigns.evidence.consent import consent_row
from campaigns.evidence.inputs import ConsentEvidenceIn
from campaigns.evidence.projections import append_consent_events, lock_addresses, refresh_suppressed
from campaigns.models import Contact, ContactHash, Delivery
from campaigns.sending.states import DeliveryStatus
from campaigns.suppression.entries import hash_contact, stop_open_deliveries
from campaigns.suppression.predicate import ACTIVE, SUPPRESSION

CONTACT = Contact.__table__  # type: ignore[attr-defined]
CONTACT_HASH = ContactHash.__table__  # type: ignore[attr-defined]
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
BATCH = 500


@dataclass(frozen=True)
class Taken:
    """An objection taken: the person's language (for the answer page), and whether it made a
    new entry (False: the address was suppressed already; one entry, one acknowledgement)."""

    locale: str | None
    new: bool


@dataclass(frozen=True)
class Addressee:
    """Who to acknowledge an opt-out to (C15), or send a confirmation request to."""

    email: str
    name: str | None
    locale: str | None
    # The opt-out's acknowledgement, stored in its outbox (campaigns/acknowledgements.py);
    # None when the shop sends none, or for a confirmation request.
    acknowledgement: int | None = None


# Step 1 for a delivery's addressee on PostgreSQL, as one statement (the one-click path, whose
# bursts are the channel's whole load): what `object_to_delivery` does, with the contact's
# address hash from `contact_hash` instead of hashing the address in Python. Two posts of one
# token at once can both add an entry (the NOT EXISTS reads the statement's snapshot, from
# before the row lock's wait): the follow-up draws the consequences from the earliest only.
# No row: an unknown delivery. `hashed` is 0 when the contact has no hash under the signing
# key yet (a secret just added): then nothing was added, and `object_to_delivery` is the way.
ONE_CLICK_PG = sa.text(
    """
WITH target AS (
    SELECT contact_id, campaign_id FROM delivery WHERE id = :delivery_id FOR UPDATE
), stopped AS (
    UPDATE delivery SET status = :skipped, skip_reason = 'suppressed'
    WHERE contact_id = (SELECT contact_id FROM target) AND status IN (:queued, :sending)
    RETURNING id
), entry AS (
    INSERT INTO suppression
        (address_hash, key_id, reason, channel, campaign_id, created_at, follow_up_due)
    SELECT h.address_hash, h.key_id, 'unsubscribe', :channel, t.campaign_id, :now, true
    FROM target t JOIN contact_hash h ON h.contact_id = t.contact_id AND h.key_id = :key_id
    WHERE NOT EXISTS (
        SELECT 1 FROM suppression s JOIN contact_hash o ON o.address_hash = s.address_hash
        WHERE o.contact_id = t.contact_id AND s.lifted_at IS NULL
    )
    RETURNING id
)
SELECT c.locale,
       (SELECT count(*) FROM entry) AS added,
       (SELECT count(*) FROM contact_hash h
         WHERE h.contact_id = t.contact_id AND h.key_id = :key_id) AS hashed,
       (SELECT count(*) FROM stopped) AS stopped
FROM target t JOIN contact c ON c.id = t.contact_id
"""
).bindparams(
    sa.bindparam("now", type_=SUPPRESSION.c.created_at.type),
    skipped=DeliveryStatus.SKIPPED.value,
    queued=DeliveryStatus.QUEUED.value,
    sending=DeliveryStatus.SENDING.value,
)


def one_click_pg_params(delivery_id: int, *, channel: str, ctx: Context) -> dict[str, Any]:
    return {
        "delivery_id": delivery_id,
        "channel": channel,
        "now": ctx.clock.now(),
        "key_id": ctx.hasher.key_ids[0],
    }


async def object_to_delivery(
    session: AsyncSession, delivery_id: int, *, channel: str, ctx: Context
) -> Taken | None:
    """The objection of the person a delivery went to (its unsubscribe token), on either
    backend. None for an unknown delivery. Never commits."""
    row = (
        await session.execute(
            sa.select(
                DELIVERY.c.contact_id, DELIVERY.c.campaign_id, CONTACT.c.email, CONTACT.c.locale
            )
            .join(CONTACT, CONTACT.c.id == DELIVERY.c.contact_id)
            .where(DELIVERY.c.id == delivery_id)
            # Two posts of one token (a provider retrying) wait for each other: the second
            # then sees the first's entry and adds none (a statement after the wait).
            .with_for_update(of=DELIVERY)
        )
    ).first()
    if row is None:
        return None
    await hash_contact(session, row.contact_id, row.email, ctx.hasher)
    entry = await take_objection(
        session, row.email, channel=channel, campaign_id=row.campaign_id, ctx=ctx
    )
    return Taken(row.locale, entry is not None)


async def take_objection(
    session: AsyncSession,
    email: str,
    *,
    channel: str,
    campaign_id: str | None,
    ctx: Context,
) -> int | None:
    """Step 1 for an address: its open deliveries stopped and its entry, due for follow-up.
    Returns the entry's id, or None when the address is suppressed already. Never commits."""
    address = normalise_address(email)
    hashes = ctx.hasher.all_hashes(address)
    await stop_open_deliveries(session, hashes)
    digest, key_id = ctx.hasher.primary(address)
    entry = sa.select(
        sa.literal(digest).label("address_hash"),
        sa.literal(key_id).label("key_id"),
        sa.literal("unsubscribe").label("reason"),
        sa.literal(channel).label("channel"),
        sa.literal(campaign_id, sa.String).label("campaign_id"),
        sa.literal(ctx.clock.now(), SUPPRESSION.c.created_at.type).label("created_at"),
        sa.true().label("follow_up_due"),
    ).where(~sa.exists().where(among(SUPPRESSION.c.address_hash, hashes, session), ACTIVE))
    columns = ["address_hash", "key_id", "reason", "channel", "campaign_id", "created_at"]
    added = await session.execute(
        sa.insert(SUPPRESSION)
        .from_select([*columns, "follow_up_due"], entry)
        .returning(SUPPRESSION.c.id)
    )
    entry_id = added.scalar()
    return None if entry_id is None else int(entry_id)


@dataclass(frozen=True)
class _Due:
    entry_id: int
    address_hash: str
    channel: str
    created_at: datetime


@dataclass(frozen=True)
class FollowedUp:
    entries: int  # how many entries were followed up (fewer than asked: none left now)
    to_acknowledge: list[Addressee]  # stored claimed by this process, to send after the commit


async def follow_up_objections(
    session: AsyncSession, ctx: Context, ids: Sequence[int] | None = None, limit: int = BATCH
) -> FollowedUp:
    """Step 2 for these entries, or for up to `limit` of those due. Two processes never take
    the same entry. Never commits."""
    chosen = (
        sa.select(
            SUPPRESSION.c.id,
            SUPPRESSION.c.address_hash,
            SUPPRESSION.c.channel,
            SUPPRESSION.c.created_at,
            SUPPRESSION.c.lifted_at.is_not(None).label("lifted"),
        )
        .where(SUPPRESSION.c.follow_up_due.is_(True))
        .order_by(SUPPRESSION.c.id)
        .limit(limit)
    )
    if ids is not None:
        chosen = chosen.where(among(SUPPRESSION.c.id, ids, session))
    if dialect_name(session) == "postgresql":
        chosen = chosen.with_for_update(skip_locked=True)
    rows = (await session.execute(chosen)).all()
    if not rows:
        return FollowedUp(0, [])
    await session.execute(
        sa.update(SUPPRESSION)
        .where(among(SUPPRESSION.c.id, [row.id for row in rows], session))
        .values(follow_up_due=False)
    )
    # One lifted meanwhile (a double opt-in within seconds, C22) has nothing left to draw; nor
    # has one that an earlier active entry of the address precedes (two objections at once:
    # both are kept, as what happened, and the earliest is the one acknowledged).
    earlier = SUPPRESSION.alias("earlier")
    preceded = set(
        (
            await session.execute(
                sa.select(SUPPRESSION.c.id).where(
                    among(SUPPRESSION.c.id, [row.id for row in rows], session),
                    sa.exists().where(
                        earlier.c.address_hash == SUPPRESSION.c.address_hash,
                        earlier.c.lifted_at.is_(None),
                        earlier.c.id < SUPPRESSION.c.id,
                    ),
                )
            )
        ).scalars()
    )
    due = [_Due(*row[:4]) for row in rows if not row.lifted and row.id not in preceded]
    # The entries' contacts (an erased contact has none: only its entry is left).
    by_hash = {d.address_hash: d for d in due}
    holders = (
        await session.execute(
            sa.select(
                CONTACT.c.id,
                CONTACT.c.email,
                CONTACT.c.name,
                CONTACT.c.locale,
                CONTACT_HASH.c.address_hash,
            )
            .join(CONTACT_HASH, CONTACT_HASH.c.contact_id == CONTACT.c.id)
            .where(among(CONTACT_HASH.c.address_hash, list(by_hash), session))
            .order_by(CONTACT.c.id)
        )
    ).all()
    holders = list({holder.id: holder for holder in reversed(holders)}.values())[::-1]
    contact_ids = [holder.id for holder in holders]
    hashes = {
        digest
        for holder in holders
        for digest in ctx.hasher.all_hashes(normalise_address(holder.email))
    } | set(by_hash)
    await lock_addresses(session, of_contacts=contact_ids)  # see there: against a rebuild
    await refresh_suppressed(session, sorted(hashes))
    await stop_open_deliveries(session, hashes)  # queued since step 1
    await withdraw_all(
        session,
        [
            (
                holder.id,
                by_hash[holder.address_hash].channel,
                by_hash[holder.address_hash].created_at,
            )
            for holder in holders
        ],
        ctx,
    )
    acks: Sequence[int | None] = [None] * len(holders)
    if holders and ctx.config.marketing.acknowledge_opt_outs:
        acks = await add_acknowledgements(session, contact_ids, ctx.clock)
    return FollowedUp(
        len(rows),
        [
            Addressee(holder.email, holder.name, holder.locale, ack)
            for holder, ack in zip(holders, acks, strict=True)
        ],
    )


async def withdraw_all(
    session: AsyncSession, objections: Sequence[tuple[str, str, datetime]], ctx: Context
) -> None:
    """An objection to all marketing is also a withdrawal of every purpose, in the ledger, at
    the time of the objection (C31): (contact id, channel, when) each. If a fresh double
    opt-in later lifts the suppression (C22), only the purposes it confirms come back."""
    now = ctx.clock.now()
    rows = [
        consent_row(
            ConsentEvidenceIn(purpose=purpose, granted=False, captured_at=when, channel=channel),
            contact_id=contact_id,
            now=now,
        )
        for contact_id, channel, when in objections
        for purpose in ctx.config.marketing.purposes
    ]
    if rows:
        await append_consent_events(session, rows)
