"""The log of rights requests (C38): what was asked, when, by which channel and by whom."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.clock import Clock
from campaigns.models import RightsRequest


async def log_request(
    session: AsyncSession,
    contact_id: str | None,
    *,
    kind: str,
    channel: str,
    actor: str,
    clock: Clock,
) -> None:
    """Never the address: the contact while it exists, nothing once it is erased."""
    session.add(
        RightsRequest(
            contact_id=contact_id,
            kind=kind,
            channel=channel,
            actor=actor[:100],
            requested_at=clock.now(),
        )
    )
    await session.flush()
