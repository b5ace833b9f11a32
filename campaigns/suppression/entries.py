"""The suppression list: objections and delivery failures, keyed by HMAC of the address (C21).

The hash outlives the contact (erasure keeps it), so an address that objected cannot come back
through a re-import. With several secrets configured, new entries use the first one and lookups
try them all, so a secret can be rotated without losing the list.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from campaigns.addresses import normalise_address, without_addresses
from campaigns.clock import Clock
from campaigns.db import among, insert_new_rows
from campaigns.errors import InvalidInput
from campaigns.evidence.projections import lock_addresses, refresh_suppressed
from campaigns.models import Contact, ContactHash, Delivery, Suppression
from campaigns.sending.states import OPEN_DELIVERIES, DeliveryStatus
from campaigns.suppression.hashing import AddressHasher, address_hmac
from campaigns.suppression.inputs import SuppressionIn
from campaigns.suppression.predicate import (
    ACTIVE,
    LIFTABLE_REASONS,
    REASONS,
    SUPPRESSION,
    active_for,
    contacts_with_address,
)


async def suppressed_among(
    session: AsyncSession, addresses: Iterable[str], hasher: AddressHasher
) -> set[str]:
    """The normalised addresses of `addresses` that have an active suppression entry."""
    return set(await active_reasons(session, addresses, hasher))


async def active_reasons(
    session: AsyncSession, addresses: Iterable[str], hasher: AddressHasher
) -> dict[str, set[str]]:
    """The reasons of the active entries of each of `addresses` (normalised) that has any:
    one read for a batch of addresses."""
    by_hash: dict[str, str] = {}
    for address in addresses:
        for digest in hasher.all_hashes(address):
            by_hash[digest] = address
    if not by_hash:
        return {}
    rows = await session.execute(
        sa.select(SUPPRESSION.c.address_hash, SUPPRESSION.c.reason).where(
            active_for(by_hash, session)
        )
    )
    reasons: dict[str, set[str]] = {}
    for digest, reason in rows.all():
        reasons.setdefault(by_hash[digest], set()).add(reason)
    return reasons


async def active_entries(
    session: AsyncSession, address: str, hasher: AddressHasher
) -> Sequence[Suppression]:
    """The entries that suppress `address` now, oldest first."""
    hashes = hasher.all_hashes(normalise_address(address))
    rows = await session.execute(
        sa.select(Suppression)
        .where(active_for(hashes, session))
        .order_by(col(Suppression.created_at))
    )
    return rows.scalars().all()


@dataclass(frozen=True)
class NewEntry:
    """An objection or failure to record (C14: the reason and the channel it came by)."""

    address: str
    reason: str
    channel: str
    note: str | None = None
    campaign_id: str | None = None  # the mail it came from, if any


async def suppress(
    session: AsyncSession,
    address: str,
    *,
    reason: str,
    channel: str,
    clock: Clock,
    hasher: AddressHasher,
    note: str | None = None,
    campaign_id: str | None = None,
) -> None:
    """Record an objection or failure (C14: reason, channel and UTC time). Never commits."""
    entry = NewEntry(address, reason, channel, note, campaign_id)
    await suppress_all(session, [entry], clock=clock, hasher=hasher)


async def suppress_all(
    session: AsyncSession, entries: Sequence[NewEntry], *, clock: Clock, hasher: AddressHasher
) -> None:
    """Record objections or failures, a batch of them in a few statements (the return channel
    decides hundreds of reports at once): the entries, the profiles' flag, the open
    deliveries stopped. Never commits."""
    if not entries:
        return
    unknown = {entry.reason for entry in entries} - set(REASONS)
    if unknown:
        raise ValueError(f"unknown suppression reason {sorted(unknown)[0]!r}")
    addresses = [normalise_address(entry.address) for entry in entries]
    await lock_addresses(session, addresses=addresses)  # see there: against a profile rebuild
    now = clock.now()
    rows = []
    for address, entry in zip(addresses, entries, strict=True):
        digest, key_id = hasher.primary(address)
        rows.append(
            {
                "address_hash": digest,
                "key_id": key_id,
                "reason": entry.reason,
                "channel": entry.channel,
                # A relay's reply quotes the address ("550 <an@example.be>: no such user"):
                # the entry outlives an erasure, the address must not (C21).
                "note": without_addresses(entry.note)[:500] if entry.note else None,
                "campaign_id": entry.campaign_id,
                "created_at": now,
                "lifted_at": None,
            }
        )
    await session.execute(sa.insert(SUPPRESSION), rows)
    hashes = sorted({digest for address in addresses for digest in hasher.all_hashes(address)})
    await refresh_suppressed(session, hashes)
    await stop_open_deliveries(session, hashes)


async def stop_open_deliveries(session: AsyncSession, address_hashes: Collection[str]) -> None:
    """Open deliveries to these addresses stop here; a message being handed to SMTP holds its
    row, so this waits for it and nothing is handed over after this commits (C13). Locked
    in id order first, as a handoff locks its batch: a batch of suppressions and a handoff
    that share rows then wait for each other in turn instead of deadlocking."""
    delivery = Delivery.__table__  # type: ignore[attr-defined]
    open_ids = await session.execute(
        sa.select(delivery.c.id)
        .where(
            delivery.c.status.in_(OPEN_DELIVERIES),
            delivery.c.contact_id.in_(contacts_with_address(address_hashes)),
        )
        .order_by(delivery.c.id)
        .with_for_update()
    )
    stopped = list(open_ids.scalars())
    if stopped:
        await session.execute(
            sa.update(delivery)
            .where(among(delivery.c.id, stopped, session), delivery.c.status.in_(OPEN_DELIVERIES))
            .values(status=DeliveryStatus.SKIPPED, skip_reason="suppressed")
        )


async def lift_unsubscribe(
    session: AsyncSession, address: str, *, clock: Clock, hasher: AddressHasher
) -> bool:
    """Lift unsubscribe entries after a completed double opt-in (C22).

    Returns False, lifting nothing, when any other kind of entry (complaint, hard bounce,
    erasure ...) is active: those are never lifted automatically.
    """
    address = normalise_address(address)
    await lock_addresses(session, addresses=[address])  # see there: against a profile rebuild
    entries = await active_entries(session, address, hasher)
    if any(entry.reason not in LIFTABLE_REASONS for entry in entries):
        return False
    now: datetime = clock.now()
    for entry in entries:
        entry.lifted_at = now
    await session.flush()
    await refresh_suppressed(session, hasher.all_hashes(address))
    return True


async def hash_contact(
    session: AsyncSession, contact_id: str, email: str, hasher: AddressHasher
) -> None:
    """The contact's address under every configured secret where its hash is missing (a
    secret added since the hashes were synced): the gate and an objection's follow-up find the
    contact by these. Never commits."""
    table = ContactHash.__table__  # type: ignore[attr-defined]
    have = set(
        (
            await session.execute(sa.select(table.c.key_id).where(table.c.contact_id == contact_id))
        ).scalars()
    )
    rows = [
        {"contact_id": contact_id, "key_id": key_id, "address_hash": digest}
        for key_id, digest in hasher.keyed_hashes(normalise_address(email))
        if key_id not in have
    ]
    await insert_new_rows(session, table, rows)


class RetiredSecretError(Exception):
    """A secret was removed while suppression entries still depend on it (C21)."""


async def sync_contact_hashes(
    session: AsyncSession, hasher: AddressHasher, batch_size: int = 5000
) -> int:
    """Hash every contact's address under every configured secret, and forget hashes under
    secrets no longer configured. Only does work after a secret was added (rotation).

    Returns how many hashes were added. Never commits.
    """
    entries = Suppression.__table__  # type: ignore[attr-defined]
    orphaned = (
        await session.execute(
            sa.select(sa.func.count())
            .select_from(entries)
            .where(entries.c.key_id.not_in(hasher.key_ids), ACTIVE)
        )
    ).scalar_one()
    if orphaned:
        # Without its secret such an entry matches no address: the objection would be lost.
        raise RetiredSecretError(
            f"{orphaned} suppression entries were made with a secret that is no longer in"
            " MAILER_SECRET_KEYS; keep that secret (after the new one) so they still match"
        )
    table = ContactHash.__table__  # type: ignore[attr-defined]
    retired = await session.execute(table.delete().where(table.c.key_id.not_in(hasher.key_ids)))
    added = 0
    for key in hasher.keys:
        key_id = hasher.key_id(key)
        while True:
            missing = (
                sa.select(col(Contact.id), col(Contact.email))
                .where(
                    ~sa.exists().where(
                        table.c.contact_id == col(Contact.id), table.c.key_id == key_id
                    )
                )
                .limit(batch_size)
            )
            rows = (await session.execute(missing)).all()
            if not rows:
                break
            await session.execute(
                sa.insert(table),
                [
                    {
                        "contact_id": contact_id,
                        "key_id": key_id,
                        "address_hash": address_hmac(key, email),
                    }
                    for contact_id, email in rows
                ],
            )
            added += len(rows)
    if added or retired.rowcount:  # type: ignore[attr-defined]
        await refresh_suppressed(session)
    return added


@dataclass(frozen=True)
class SuppressionEntry:
    id: str
    reason: str
    channel: str
    note: str | None
    created_at: datetime
    lifted_at: datetime | None


@dataclass(frozen=True)
class SuppressionStatus:
    """Is the address suppressed, since when, and every entry for it (lifted ones too)."""

    email: str
    suppressed: bool
    since: datetime | None
    entries: tuple[SuppressionEntry, ...]


async def suppression_status(
    session: AsyncSession, email: str, hasher: AddressHasher
) -> SuppressionStatus:
    """Every entry for the address, lifted ones included; suppressed if any is active."""
    try:
        address = normalise_address(email)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="email") from exc
    rows = await session.execute(
        sa.select(Suppression)
        .where(among(col(Suppression.address_hash), hasher.all_hashes(address), session))
        .order_by(col(Suppression.created_at), col(Suppression.id))
    )
    entries = list(rows.scalars())
    active = [e for e in entries if e.lifted_at is None]
    return SuppressionStatus(
        email=address,
        suppressed=bool(active),
        since=active[0].created_at if active else None,
        entries=tuple(
            SuppressionEntry(
                id=str(e.id),
                reason=e.reason,
                channel=e.channel,
                note=e.note,
                created_at=e.created_at,
                lifted_at=e.lifted_at,
            )
            for e in entries
        ),
    )


async def record_objection(
    session: AsyncSession, data: SuppressionIn, *, clock: Clock, hasher: AddressHasher
) -> SuppressionStatus:
    """A staff-entered objection or manual suppression (C14, C16). Never commits."""
    await suppress(
        session,
        data.email,
        reason=data.reason,
        channel=data.channel,
        clock=clock,
        hasher=hasher,
        note=data.note,
    )
    return await suppression_status(session, data.email, hasher)
