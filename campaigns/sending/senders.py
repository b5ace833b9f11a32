"""The live sending processes (workers on any host), so the relay's limits are shared: each
worker beats every few seconds, and takes its part of `[delivery] connections` and
`rate_per_second` by how many beat."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from campaigns.models import SendingProcess

LIVE = timedelta(seconds=20)  # a worker beats every 5 s: four missed beats and it is gone
FORGOTTEN = timedelta(minutes=10)  # rows of processes long gone are deleted


async def beat(session: AsyncSession, identity: str, now: datetime) -> int:
    """This process is alive; how many sending processes are (itself included)."""
    row = await session.get(SendingProcess, identity)
    if row is None:
        session.add(SendingProcess(id=identity, seen_at=now))
    else:
        row.seen_at = now
    await session.flush()
    await session.execute(
        sa.delete(SendingProcess).where(col(SendingProcess.seen_at) < now - FORGOTTEN)
    )
    return await live_senders(session, now)


async def live_senders(session: AsyncSession, now: datetime) -> int:
    """How many sending processes beat lately (at least one: the one asking)."""
    count = await session.execute(
        sa.select(sa.func.count())
        .select_from(SendingProcess)
        .where(col(SendingProcess.seen_at) >= now - LIVE)
    )
    return max(1, int(count.scalar_one()))


async def leave(session: AsyncSession, identity: str) -> None:
    """A worker that stops: the others take its part at their next beat."""
    await session.execute(sa.delete(SendingProcess).where(col(SendingProcess.id) == identity))
