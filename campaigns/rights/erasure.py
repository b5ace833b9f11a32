"""Erasure (C33): everything the registry holds about a person goes, in one transaction; what
stays is the suppression hash with reason `erasure` and its date (C21), so that a later push or
sign-up of the address gives no basis (C22), and the record that the request was met."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.addresses import normalise_address
from campaigns.context import Context
from campaigns.errors import InvalidInput, NotFound
from campaigns.evidence.projections import lock_addresses
from campaigns.models import Contact
from campaigns.rights.registry import CONTACT, HOLDINGS, Person
from campaigns.rights.requests import log_request
from campaigns.suppression.entries import NewEntry, active_reasons, suppress_all


@dataclass(frozen=True)
class Erased:
    """What went, per table, in rows: counts only (the address is gone)."""

    rows: dict[str, int]


async def erase_contact(
    session: AsyncSession, contact_id: str, *, ctx: Context, channel: str, actor: str
) -> Erased:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"no contact {contact_id}")
    return await _erase(session, Person(contact.id, contact.email), ctx, channel, actor)


async def erase_address(
    session: AsyncSession, email: str, *, ctx: Context, channel: str, actor: str
) -> Erased:
    """By address (the CLI, a request by mail): its contact if there is one, and what names
    the address without one (sign-ups, reports); the address is suppressed either way."""
    try:
        address = normalise_address(email)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="email") from exc
    found = await session.execute(sa.select(CONTACT.c.id).where(CONTACT.c.email == address))
    return await _erase(session, Person(found.scalar_one_or_none(), address), ctx, channel, actor)


async def _erase(
    session: AsyncSession, person: Person, ctx: Context, channel: str, actor: str
) -> Erased:
    """Never commits."""
    await lock_addresses(session, addresses=[person.email])
    if "erasure" not in (await active_reasons(session, [person.email], ctx.hasher)).get(
        person.email, set()
    ):
        entry = NewEntry(person.email, reason="erasure", channel=channel)
        await suppress_all(session, [entry], clock=ctx.clock, hasher=ctx.hasher)
    rows: Counter[str] = Counter()
    for holding in HOLDINGS:
        if (
            person.contact_id is None
            and holding.table is not CONTACT
            and "contact_id" in (holding.table.c)
        ):
            continue  # no contact: nothing is linked to one
        where = holding.rows(person)
        if holding.on_erasure == "unlink":
            result = await session.execute(
                sa.update(holding.table).where(where).values(contact_id=None)
            )
        else:
            result = await session.execute(sa.delete(holding.table).where(where))
        rows[holding.table.name] += result.rowcount  # type: ignore[attr-defined]
    await log_request(session, None, kind="erasure", channel=channel, actor=actor, clock=ctx.clock)
    return Erased(dict(rows))
