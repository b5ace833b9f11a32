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
from campaigns.rights.registry import CONTACT, HOLDINGS, People
from campaigns.rights.requests import log_request
from campaigns.suppression.entries import NewEntry, active_reasons, suppress_all
from campaigns.suppression.predicate import SUPPRESSION


@dataclass(frozen=True)
class Erased:
    """What went, per table, in rows: counts only (the address is gone)."""

    rows: dict[str, int]


async def erase_contact(
    session: AsyncSession, contact_id: str, *, ctx: Context, channel: str, actor: str
) -> Erased:
    # The address locked before it is read, so a push that changes it meanwhile waits: the
    # address erased and suppressed is the contact's own.
    await lock_addresses(session, of_contacts=[contact_id])
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"no contact {contact_id}")
    erased = await erase_people(session, People.one(contact.id, contact.email), ctx, channel)
    await log_request(session, None, kind="erasure", channel=channel, actor=actor, clock=ctx.clock)
    return erased


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
    people = People.one(found.scalar_one_or_none(), address)
    erased = await erase_people(session, people, ctx, channel)
    await log_request(session, None, kind="erasure", channel=channel, actor=actor, clock=ctx.clock)
    return erased


async def erase_people(
    session: AsyncSession, people: People, ctx: Context, channel: str, *, requested: bool = True
) -> Erased:
    """Erase them all, a few statements per table of the registry whatever their number (the
    retention job erases thousands at a time). A person's request leaves the suppression hash
    (reason `erasure`, by `channel`), so the address is not mailed again (C21, C22); retention
    (`requested=False`) leaves none: it is no objection, and the person may come back with a
    new consent. The caller logs the request, if it was one. Never commits."""
    if requested:
        # Against a profile rebuild of the address meanwhile (see lock_addresses). Retention
        # locks its contacts' rows instead: thousands of these would fill PostgreSQL's lock
        # table, and it makes no entry.
        await lock_addresses(session, addresses=people.emails)
        already = await active_reasons(session, people.emails, ctx.hasher)
        entries = [
            NewEntry(email, reason="erasure", channel=channel)
            for email in people.emails
            if "erasure" not in already.get(email, set())
        ]
        await suppress_all(session, entries, clock=ctx.clock, hasher=ctx.hasher)
    # What stays of the person is the hash with reason, channel and date: no note (C21).
    hashes = sorted({h for email in people.emails for h in ctx.hasher.all_hashes(email)})
    for start in range(0, len(hashes), 5000):  # within any database's limit of parameters
        chunk = hashes[start : start + 5000]
        await session.execute(
            sa.update(SUPPRESSION).where(SUPPRESSION.c.address_hash.in_(chunk)).values(note=None)
        )
    rows: Counter[str] = Counter()
    for holding in HOLDINGS:
        if not people.contact_ids and "contact_id" in holding.table.c:
            continue  # no contact: nothing is linked to one
        where = holding.rows(people)
        if holding.on_erasure == "unlink":
            result = await session.execute(
                sa.update(holding.table).where(where).values(contact_id=None)
            )
        else:
            result = await session.execute(sa.delete(holding.table).where(where))
        rows[holding.table.name] += result.rowcount  # type: ignore[attr-defined]
    return Erased(dict(rows))
