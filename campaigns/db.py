"""Small SQL helpers shared by the service modules: dialect-aware bulk writes and lookups.

PostgreSQL gets its fast paths (COPY for rows known to be new, one array parameter instead of
a thousand IN-list parameters); SQLite gets the portable statement. Callers do not care which.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles


def dialect_name(session: AsyncSession) -> str:
    bind = session.bind
    return bind.dialect.name if bind is not None else "postgresql"


def dialect_insert(session: AsyncSession, table: sa.Table) -> Any:
    """`INSERT` with `ON CONFLICT` support for whichever database the session talks to."""
    if dialect_name(session) == "sqlite":
        return sqlite.insert(table)
    return postgresql.insert(table)


async def insert_ignoring_duplicates(
    session: AsyncSession, table: sa.Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    if rows:
        stmt = dialect_insert(session, table).on_conflict_do_nothing(index_elements=list(keys))
        await session.execute(stmt, list(rows))


async def insert_new_rows(
    session: AsyncSession, table: sa.Table, rows: Sequence[dict[str, Any]]
) -> None:
    """Insert rows that cannot exist yet (a concurrent writer makes the transaction fail on a
    unique key, and the caller retries it). On PostgreSQL this is COPY, several times faster
    than a multi-row INSERT for a thousand rows."""
    if not rows:
        return
    if dialect_name(session) != "postgresql":
        await session.execute(sa.insert(table), list(rows))
        return
    columns = list(rows[0])
    # COPY bypasses SQLAlchemy, so apply the columns' own bind conversions (UTC datetimes).
    converters = [
        (i, convert)
        for i, name in enumerate(columns)
        if (convert := table.c[name].type.bind_processor(_PG)) is not None
    ]
    records = [list(row.values()) for row in rows]
    for record in records:
        for i, convert in converters:
            if record[i] is not None:
                record[i] = convert(record[i])
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    try:
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            table.name, records=records, columns=columns
        )
    except Exception as exc:
        # Present a constraint violation (SQLSTATE class 23) as SQLAlchemy would, so callers
        # handle one exception type whichever path wrote the rows.
        if str(getattr(exc, "sqlstate", "")).startswith("23"):
            raise sa.exc.IntegrityError(f"COPY {table.name}", None, exc) from exc
        raise


_PG = postgresql.asyncpg.dialect()  # type: ignore[no-untyped-call]


def among(column: Any, values: Collection[Any], session: AsyncSession) -> Any:
    """`column IN values`: one array parameter on PostgreSQL, an expanding IN list elsewhere."""
    if dialect_name(session) == "postgresql":
        return column == sa.any_(
            sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        )
    return column.in_(list(values))


# ---- functions that PostgreSQL and SQLite spell differently --------------------------------


class json_object_agg(sa.sql.functions.GenericFunction[Any]):
    """Aggregate (key, value) rows into one JSON object: jsonb_object_agg on PostgreSQL (NULL
    over no rows), json_group_object on SQLite ('{}' over no rows)."""

    name = "jsonb_object_agg"
    inherit_cache = True


@compiles(json_object_agg, "sqlite")
def _json_object_agg_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return f"json_group_object({compiler.process(element.clauses, **kw)})"


class epoch_us(sa.sql.functions.GenericFunction[int]):
    """A stored UTC timestamp as whole microseconds since 1970 (a number that JSON can hold
    and compare exactly)."""

    name = "epoch_us"
    type = sa.BigInteger()
    inherit_cache = True


@compiles(epoch_us, "postgresql")
def _epoch_us_postgresql(element: Any, compiler: Any, **kw: Any) -> str:
    # EXTRACT gives numeric (exact) since PostgreSQL 14.
    ts = compiler.process(element.clauses, **kw)
    return f"CAST(EXTRACT(EPOCH FROM {ts}) * 1000000 AS BIGINT)"


@compiles(epoch_us, "sqlite")
def _epoch_us_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    # SQLite holds the text 'YYYY-MM-DD HH:MM:SS.ffffff' (UTCDateTime): whole seconds from
    # strftime over the first 19 characters (given the fraction, SQLite rounds it to the
    # millisecond first: .9995 s would become the next second), microseconds from the rest.
    ts = compiler.process(element.clauses, **kw)
    seconds = f"CAST(strftime('%s', substr({ts}, 1, 19)) AS INTEGER)"
    return f"({seconds} * 1000000 + CAST(substr({ts}, 21, 6) AS INTEGER))"


def as_epoch_us(moment: datetime) -> int:
    """What `epoch_us` gives for this moment in the database."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_epoch_us(us: int) -> datetime:
    """The moment for which `epoch_us` gave this number."""
    return _EPOCH + timedelta(microseconds=us)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class greatest(sa.sql.functions.GenericFunction[Any]):
    """The largest of its arguments, ignoring NULLs only if told how: PostgreSQL's GREATEST,
    SQLite's scalar max() (which answers NULL if any argument is NULL: callers coalesce)."""

    name = "greatest"
    inherit_cache = True


@compiles(greatest, "sqlite")
def _greatest_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"
