"""The one question "is this address suppressed?", as SQL, and the reasons an entry can have.

An address is suppressed while an entry for its HMAC (under any configured secret) is not
lifted. Every reader asks it here: the handoff before SMTP and the recipient flows live
(`is_suppressed`, `active_for`), the audience and the claim gate through the marketing
profile's `suppressed` flag, which is this same predicate stored per contact and kept up to date
by every writer of entries (evidence/projections.py `refresh_suppressed`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.db import among
from campaigns.models import ContactHash, Suppression

SUPPRESSION = Suppression.__table__  # type: ignore[attr-defined]
CONTACT_HASH = ContactHash.__table__  # type: ignore[attr-defined]

REASONS = (
    "unsubscribe",
    "objection",
    "complaint",
    "hard_bounce",
    "soft_bounce_limit",
    "erasure",
    "manual",
)
# Only a plain unsubscribe may be lifted, and only by a completed double opt-in (C22).
LIFTABLE_REASONS = frozenset({"unsubscribe"})
# After these not even a double opt-in request is sent: the person complained, the mailbox
# does not exist, or the person was erased (C17, C19, C21-C22, C33).
NEVER_MAILED_AGAIN = frozenset({"complaint", "hard_bounce", "erasure"})

ACTIVE = SUPPRESSION.c.lifted_at.is_(None)


def active_for(address_hashes: Collection[str], session: AsyncSession) -> sa.ColumnElement[bool]:
    """The entries that suppress the addresses of these hashes (each address under every
    configured secret)."""
    return sa.and_(among(SUPPRESSION.c.address_hash, list(address_hashes), session), ACTIVE)


def is_suppressed(contact_id: Any) -> sa.Exists:
    """An active entry matches the contact's address under some configured secret (C16,
    C21-C22)."""
    return sa.exists().where(
        CONTACT_HASH.c.contact_id == contact_id,
        SUPPRESSION.c.address_hash == CONTACT_HASH.c.address_hash,
        ACTIVE,
    )


def contacts_with_address(address_hashes: Collection[str]) -> sa.Select[Any]:
    """The contacts whose address has one of these hashes (the contacts an entry is about)."""
    return sa.select(CONTACT_HASH.c.contact_id).where(
        CONTACT_HASH.c.address_hash.in_(sorted(address_hashes))
    )
