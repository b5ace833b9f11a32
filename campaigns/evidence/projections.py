"""Projections of the evidence: the current consent per purpose, what a contact's orders
cover, and from those the contact's marketing profile, kept up to date in the same transaction
as the evidence they are derived from.

The evidence stays the truth (consent events are append-only, orders are the shop's records);
these tables only say what it amounts to now, so that the audience query (eligibility.py)
reads one profile row per contact instead of ranking every consent event and aggregating every
order on each count. They are rebuilt per contact from the evidence, never patched: a refresh
deletes the contact's rows and selects them again with the same statement the migration used
to fill them, so a late-arriving event captured earlier than the current one cannot win (C31),
an order whose status changes moves the coverage, and a changed address drops the orders of
the old one (C6).

Every writer of consent events, orders or a contact's address calls `refresh_evidence` for
the contacts it touched (directly or through `append_consent_events`), before its transaction
commits: contact ingest (evidence/contacts.py, all paths), single consent decisions
(evidence/profiles.py) and the recipient flows (campaigns/recipients.py). Adding or lifting a
suppression entry, and a change of secrets, call `refresh_suppressed` (suppression/entries.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.db import among, dialect_name, epoch_us, insert_ignoring_duplicates, json_object_agg
from campaigns.models import (
    ConsentEvent,
    Contact,
    ContactHash,
    CurrentConsent,
    MarketingProfile,
    OrderCategory,
    PurchaseCoverage,
    PurchaseStanding,
    ShopOrder,
    SoftOptInObjection,
    Suppression,
)
from campaigns.suppression.predicate import is_suppressed

CONSENT = ConsentEvent.__table__  # type: ignore[attr-defined]
CONTACT = Contact.__table__  # type: ignore[attr-defined]
ORDER = ShopOrder.__table__  # type: ignore[attr-defined]
ORDER_CATEGORY = OrderCategory.__table__  # type: ignore[attr-defined]
CURRENT_CONSENT = CurrentConsent.__table__  # type: ignore[attr-defined]
PURCHASE_COVERAGE = PurchaseCoverage.__table__  # type: ignore[attr-defined]
PURCHASE_STANDING = PurchaseStanding.__table__  # type: ignore[attr-defined]
MARKETING_PROFILE = MarketingProfile.__table__  # type: ignore[attr-defined]
CONTACT_HASH = ContactHash.__table__  # type: ignore[attr-defined]
SUPPRESSION = Suppression.__table__  # type: ignore[attr-defined]
OBJECTION = SoftOptInObjection.__table__  # type: ignore[attr-defined]

# Restricts a statement to some contacts: given a contact-id column, the clauses to add.
Only = Callable[[Any], list[sa.ColumnElement[bool]]]


def _everyone(column: Any) -> list[sa.ColumnElement[bool]]:
    return []


def current_consent_rows(only: Only = _everyone) -> sa.Select[Any]:
    """Per contact and purpose, the latest valid event by capture time, then id (C2-C4, C31).
    A withdrawal counts whatever its paperwork, so it is valid and can be the latest."""
    ranked = (
        sa.select(
            CONSENT.c.contact_id,
            CONSENT.c.purpose,
            CONSENT.c.id.label("consent_event_id"),
            CONSENT.c.granted,
            CONSENT.c.captured_at,
            sa.func.row_number()
            .over(
                partition_by=(CONSENT.c.contact_id, CONSENT.c.purpose),
                order_by=(CONSENT.c.captured_at.desc(), CONSENT.c.id.desc()),
            )
            .label("rank"),
        )
        .where(
            CONSENT.c.valid.is_(True),
            CONSENT.c.captured_at.is_not(None),
            *only(CONSENT.c.contact_id),
        )
        .subquery("ranked_consent")
    )
    return sa.select(
        ranked.c.contact_id,
        ranked.c.purpose,
        ranked.c.consent_event_id,
        ranked.c.granted,
        ranked.c.captured_at,
    ).where(ranked.c.rank == 1)


def _qualifying_orders() -> list[sa.ColumnElement[bool]]:
    """C6: a completed order with the shop, the opt-out offered and not used. The address is
    the contact's current one: the callers join on it."""
    return [
        ORDER.c.status == "completed",
        ORDER.c.opt_out_offered.is_(True),
        ORDER.c.opt_out_used.is_(False),
    ]


def _with_current_address() -> Any:
    return ORDER.join(
        CONTACT, sa.and_(CONTACT.c.id == ORDER.c.contact_id, CONTACT.c.email == ORDER.c.email)
    )


def purchase_coverage_rows(only: Only = _everyone) -> sa.Select[Any]:
    """Per contact and category bought, the latest qualifying order placed with the contact's
    current address (by placing time, then order id)."""
    ranked = (
        sa.select(
            ORDER.c.contact_id,
            ORDER_CATEGORY.c.category,
            ORDER.c.id.label("order_id"),
            ORDER.c.placed_at,
            sa.func.row_number()
            .over(
                partition_by=(ORDER.c.contact_id, ORDER_CATEGORY.c.category),
                order_by=(ORDER.c.placed_at.desc(), ORDER.c.id.desc()),
            )
            .label("rank"),
        )
        .select_from(
            _with_current_address().join(ORDER_CATEGORY, ORDER_CATEGORY.c.order_id == ORDER.c.id)
        )
        # The contacts are named once, on the orders: a second `= ANY(array)` on the contact
        # side becomes a filter that PostgreSQL checks by walking the array for every row.
        .where(*_qualifying_orders(), *only(ORDER.c.contact_id))
        .subquery("ranked_coverage")
    )
    return sa.select(
        ranked.c.contact_id, ranked.c.category, ranked.c.order_id, ranked.c.placed_at
    ).where(ranked.c.rank == 1)


def purchase_standing_rows(only: Only = _everyone) -> sa.Select[Any]:
    """Per contact: its first qualifying order with its current address, an order in which
    the opt-out was used for that address, by any contact (C7), and when the person ended the
    customer exception (C38). Contacts with none of these have no row."""
    first = (
        sa.select(
            ORDER.c.contact_id.label("contact_id"),
            sa.func.min(ORDER.c.placed_at).label("first_order_at"),
            sa.null().label("opted_out_order_id"),
            sa.cast(sa.null(), OBJECTION.c.objected_at.type).label("soft_opt_in_ended_at"),
        )
        .select_from(_with_current_address())
        .where(*_qualifying_orders(), *only(ORDER.c.contact_id))
        .group_by(ORDER.c.contact_id)
    )
    opted_out = (
        sa.select(
            CONTACT.c.id.label("contact_id"),
            sa.null().label("first_order_at"),
            sa.func.max(ORDER.c.id).label("opted_out_order_id"),
            sa.cast(sa.null(), OBJECTION.c.objected_at.type).label("soft_opt_in_ended_at"),
        )
        .select_from(CONTACT.join(ORDER, ORDER.c.email == CONTACT.c.email))
        .where(ORDER.c.opt_out_used.is_(True), *only(CONTACT.c.id))
        .group_by(CONTACT.c.id)
    )
    ended = (
        sa.select(
            OBJECTION.c.contact_id.label("contact_id"),
            sa.null().label("first_order_at"),
            sa.null().label("opted_out_order_id"),
            sa.func.min(OBJECTION.c.objected_at).label("soft_opt_in_ended_at"),
        )
        .where(*only(OBJECTION.c.contact_id))
        .group_by(OBJECTION.c.contact_id)
    )
    both = sa.union_all(first, opted_out, ended).subquery("standing")
    return sa.select(
        both.c.contact_id,
        sa.func.max(both.c.first_order_at).label("first_order_at"),
        sa.func.max(both.c.opted_out_order_id).label("opted_out_order_id"),
        sa.func.max(both.c.soft_opt_in_ended_at).label("soft_opt_in_ended_at"),
    ).group_by(both.c.contact_id)


def marketing_profile_rows(only: Only = _everyone) -> sa.Select[Any]:
    """Per contact (every contact has one): the suppression flag, the purchase standing, and
    as JSON objects its current grants by purpose and its coverage by category, read from the
    projections above (which are refreshed first)."""

    def per_contact(table: sa.Table, key: Any, value: Any, *where: Any) -> Any:
        return (
            sa.select(json_object_agg(key, value, type_=MARKETING_PROFILE.c.consents.type))
            .where(table.c.contact_id == CONTACT.c.id, *where)
            .scalar_subquery()
        )

    return (
        sa.select(
            CONTACT.c.id.label("contact_id"),
            is_suppressed(CONTACT.c.id).label("suppressed"),
            PURCHASE_STANDING.c.first_order_at,
            PURCHASE_STANDING.c.opted_out_order_id,
            PURCHASE_STANDING.c.soft_opt_in_ended_at,
            per_contact(
                CURRENT_CONSENT,
                CURRENT_CONSENT.c.purpose,
                CURRENT_CONSENT.c.consent_event_id,
                CURRENT_CONSENT.c.granted.is_(True),
            ).label("consents"),
            per_contact(
                PURCHASE_COVERAGE,
                PURCHASE_COVERAGE.c.category,
                epoch_us(PURCHASE_COVERAGE.c.placed_at),
            ).label("covered_at"),
            per_contact(
                PURCHASE_COVERAGE, PURCHASE_COVERAGE.c.category, PURCHASE_COVERAGE.c.order_id
            ).label("covered_by"),
        )
        .select_from(
            CONTACT.outerjoin(PURCHASE_STANDING, PURCHASE_STANDING.c.contact_id == CONTACT.c.id)
        )
        .where(*only(CONTACT.c.id))
    )


Projection = tuple[sa.Table, Callable[[Only], sa.Select[Any]]]
CONSENT_PROJECTIONS: tuple[Projection, ...] = ((CURRENT_CONSENT, current_consent_rows),)
PURCHASE_PROJECTIONS: tuple[Projection, ...] = (
    (PURCHASE_COVERAGE, purchase_coverage_rows),
    (PURCHASE_STANDING, purchase_standing_rows),
)
PROFILE: Projection = (MARKETING_PROFILE, marketing_profile_rows)  # reads the others: last
PROJECTIONS = (*CONSENT_PROJECTIONS, *PURCHASE_PROJECTIONS, PROFILE)


def rebuild_statements(projections: Sequence[Projection] = PROJECTIONS) -> list[sa.Executable]:
    """Empty these projections (all by default) and fill them from the evidence: the
    last migration that changed their columns, and loaders that write evidence in plain SQL
    (bench/audience.py), run these."""
    statements: list[sa.Executable] = []
    for table, rows in projections:
        select = rows(_everyone)
        statements.append(table.delete())
        statements.append(table.insert().from_select(list(select.selected_columns.keys()), select))
    return statements


async def _refresh(
    session: AsyncSession, projections: Collection[Projection], contact_ids: Collection[str]
) -> None:
    ids = sorted(set(contact_ids))
    if not ids:
        return

    def only(column: Any) -> list[sa.ColumnElement[bool]]:
        return [among(column, ids, session)]

    for table, rows in projections:
        select = rows(only)
        await session.execute(table.delete().where(*only(table.c.contact_id)))
        await session.execute(
            table.insert().from_select(list(select.selected_columns.keys()), select)
        )


async def refresh_evidence(
    session: AsyncSession,
    *,
    consent_of: Collection[str] = (),
    purchases_of: Collection[str] = (),
) -> None:
    """Recompute the current consent of the contacts in `consent_of` from their ledger, what
    the orders of those in `purchases_of` cover (after new or changed orders, a new contact,
    or a contact's new address), and the marketing profile of all of them.

    An opt-out recorded on an order given with an address that another contact now holds
    also applies to that contact (C7): those holders are refreshed too."""
    purchase_ids = set(purchases_of)
    if purchase_ids:
        holders = await session.execute(
            sa.select(CONTACT.c.id)
            .select_from(CONTACT.join(ORDER, ORDER.c.email == CONTACT.c.email))
            .where(
                ORDER.c.opt_out_used.is_(True),
                among(ORDER.c.contact_id, sorted(purchase_ids), session),
            )
        )
        purchase_ids.update(holders.scalars())
    profiles = purchase_ids.union(consent_of)
    # Before any projection row is locked: an objection holds the address lock while it
    # refreshes the current consent, so the other order could deadlock.
    await lock_addresses(session, of_contacts=profiles)
    await _refresh(session, CONSENT_PROJECTIONS, consent_of)
    await _refresh(session, PURCHASE_PROJECTIONS, purchase_ids)
    await _refresh(session, (PROFILE,), profiles)


async def lock_addresses(
    session: AsyncSession,
    *,
    addresses: Collection[str] = (),
    of_contacts: Collection[str] = (),
) -> None:
    """Hold a lock per address (normalised) until the transaction ends, on PostgreSQL.

    A profile's `suppressed` flag is computed by two kinds of writer: the rebuild of a
    contact's profile (ingest, consent) and the update after a suppression entry is added or
    lifted. Under READ COMMITTED, one that runs while the other is uncommitted cannot see it:
    a rebuild would keep `false` for an address suppressed meanwhile. Both take this lock
    first, so for one address they run one after the other and the second sees the first.
    (SQLite has one writer at a time: nothing to do.)"""
    if dialect_name(session) != "postgresql":
        return
    if of_contacts:
        emails = await session.execute(
            sa.select(CONTACT.c.email).where(among(CONTACT.c.id, sorted(of_contacts), session))
        )
        addresses = [*addresses, *emails.scalars()]
    # In key order, so that two writers locking overlapping sets cannot deadlock.
    keys = sorted({_lock_key(address) for address in addresses})
    if keys:
        key = sa.func.unnest(
            sa.bindparam("keys", keys, type_=postgresql.ARRAY(sa.BigInteger))
        ).column_valued("key")
        await session.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def _lock_key(address: str) -> int:
    """A 64-bit advisory-lock key for an address."""
    return int.from_bytes(hashlib.blake2b(address.encode(), digest_size=8).digest(), signed=True)


async def refresh_suppressed(
    session: AsyncSession, address_hashes: Collection[str] | None = None
) -> None:
    """Bring the profiles' suppression flag up to date after entries were added or lifted
    for these hashes (of one address, under each configured secret), or for every contact
    after the contacts' hashes changed (a secret added or retired)."""
    profile = MARKETING_PROFILE
    update = sa.update(profile).values(suppressed=is_suppressed(profile.c.contact_id))
    if address_hashes is not None:
        update = update.where(
            profile.c.contact_id.in_(
                sa.select(CONTACT_HASH.c.contact_id).where(
                    among(CONTACT_HASH.c.address_hash, sorted(address_hashes), session)
                )
            )
        )
    await session.execute(update)


async def append_consent_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Add consent events to the ledger (an identical event is stored once) and bring the
    current consent of their contacts up to date."""
    await insert_ignoring_duplicates(session, CONSENT, rows, ("contact_id", "fingerprint"))
    await refresh_evidence(session, consent_of={row["contact_id"] for row in rows})
