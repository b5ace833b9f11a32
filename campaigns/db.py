"""Small SQL helpers shared by the service modules: dialect-aware upserts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def dialect_insert(session: AsyncSession, table: sa.Table) -> Any:
    """`INSERT` with `ON CONFLICT` support for whichever database the session talks to."""
    bind = session.bind
    name = bind.dialect.name if bind is not None else "postgresql"
    if name == "sqlite":
        return sqlite.insert(table)
    return postgresql.insert(table)


async def insert_ignoring_duplicates(
    session: AsyncSession, table: sa.Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    if rows:
        stmt = dialect_insert(session, table).on_conflict_do_nothing(index_elements=list(keys))
        await session.execute(stmt, list(rows))
