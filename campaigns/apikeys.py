"""API keys: random, shown once, stored as a SHA-256 hash, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from campaigns.clock import Clock
from campaigns.errors import InvalidInput, NotFound
from campaigns.models import ApiKey

# relay: bounce and complaint events; metrics: GET /metrics only (a scraper's key)
SCOPES = ("shop", "marketer", "relay", "metrics", "admin")
PREFIX = "mk"


def _digest(secret: str) -> str:
    # The secret part has 256 bits of randomness, so a plain hash is enough (no KDF needed).
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(
    session: AsyncSession, *, scope: str, name: str, clock: Clock
) -> tuple[str, ApiKey]:
    """Make a key; returns (the key to show once, the stored row). Never commits."""
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}", field="scope")
    if not name.strip() or len(name) > 100:
        raise InvalidInput("name must be 1-100 characters", field="name")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        id=key_id,
        name=name.strip(),
        scope=scope,
        key_hash=_digest(secret),
        created_at=clock.now(),
    )
    session.add(row)
    await session.flush()
    return f"{PREFIX}_{key_id}_{secret}", row


async def authenticate(session: AsyncSession, presented: str) -> ApiKey | None:
    """The live key matching `presented`, or None."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    row = await session.get(ApiKey, parts[1])
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, _digest(parts[2])):
        return None
    return row


async def list_keys(session: AsyncSession) -> Sequence[ApiKey]:
    rows = await session.execute(sa.select(ApiKey).order_by(col(ApiKey.created_at)))
    return rows.scalars().all()


async def revoke_key(session: AsyncSession, key_id: str, clock: Clock) -> None:
    row = await session.get(ApiKey, key_id)
    if row is None:
        raise NotFound("no key with this id")
    if row.revoked_at is None:
        row.revoked_at = clock.now()
        await session.flush()


def scope_allows(held: str, needed: str) -> bool:
    """`admin` may do everything; other scopes only their own."""
    return held == "admin" or held == needed
