"""Projections of the evidence: the current consent per purpose and what a contact's orders
cover, kept up to date in the same transaction as the evidence they are derived from.

The evidence stays the truth (consent events are append-only, orders are the shop's records);
these tables only say what it amounts to now, so that the audience query (eligibility.py)
joins them instead of ranking every consent event and aggregating every order on each count.
They are rebuilt per contact from the evidence, never patched: a refresh deletes the contact's
rows and selects them again with the same statement the migration used to fill them, so a
late-arriving event captured earlier than the current one cannot win (C31), an order whose
status changes moves the coverage, and a changed address drops the orders of the old one (C6).

Every writer of consent events, orders or a contact's address calls `refresh_consent` or
`refresh_purchases` (or both) for the contacts it touched, before its transaction commits:
contact ingest (campaigns/contacts.py, all paths), single consent decisions
(campaigns/profiles.py) and the recipient flows (campaigns/recipients.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.db import among, insert_ignoring_duplicates
from campaigns.models import (
    ConsentEvent,
    Contact,
    CurrentConsent,
    OrderCategory,
    PurchaseCoverage,
    PurchaseStanding,
    ShopOrder,
)

CONSENT = ConsentEvent.__table__  # type: ignore[attr-defined]
CONTACT = Contact.__table__  # type: ignore[attr-defined]
ORDER = ShopOrder.__table__  # type: ignore[attr-defined]
ORDER_CATEGORY = OrderCategory.__table__  # type: ignore[attr-defined]
CURRENT_CONSENT = CurrentConsent.__table__  # type: ignore[attr-defined]
PURCHASE_COVERAGE = PurchaseCoverage.__table__  # type: ignore[attr-defined]
PURCHASE_STANDING = PurchaseStanding.__table__  # type: ignore[attr-defined]

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
    """Per contact: its first qualifying order with its current address, and an order in which
    the opt-out was used for that address, by any contact (C7). Contacts with neither have no
    row."""
    first = (
        sa.select(
            ORDER.c.contact_id.label("contact_id"),
            sa.func.min(ORDER.c.placed_at).label("first_order_at"),
            sa.null().label("opted_out_order_id"),
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
        )
        .select_from(CONTACT.join(ORDER, ORDER.c.email == CONTACT.c.email))
        .where(ORDER.c.opt_out_used.is_(True), *only(CONTACT.c.id))
        .group_by(CONTACT.c.id)
    )
    both = sa.union_all(first, opted_out).subquery("standing")
    return sa.select(
        both.c.contact_id,
        sa.func.max(both.c.first_order_at).label("first_order_at"),
        sa.func.max(both.c.opted_out_order_id).label("opted_out_order_id"),
    ).group_by(both.c.contact_id)


PROJECTIONS: tuple[tuple[sa.Table, Callable[[Only], sa.Select[Any]]], ...] = (
    (CURRENT_CONSENT, current_consent_rows),
    (PURCHASE_COVERAGE, purchase_coverage_rows),
    (PURCHASE_STANDING, purchase_standing_rows),
)


def rebuild_statements() -> list[sa.Executable]:
    """Empty every projection and fill it from the evidence: the migration that introduced
    them, and loaders that write evidence in plain SQL (bench/audience.py), run these."""
    statements: list[sa.Executable] = []
    for table, rows in PROJECTIONS:
        select = rows(_everyone)
        statements.append(table.delete())
        statements.append(table.insert().from_select(list(select.selected_columns.keys()), select))
    return statements


async def _refresh(
    session: AsyncSession,
    projections: Collection[tuple[sa.Table, Callable[[Only], sa.Select[Any]]]],
    contact_ids: Collection[str],
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


async def refresh_consent(session: AsyncSession, contact_ids: Collection[str]) -> None:
    """Recompute the current consent of these contacts from their ledger."""
    await _refresh(session, PROJECTIONS[:1], contact_ids)


async def refresh_purchases(session: AsyncSession, contact_ids: Collection[str]) -> None:
    """Recompute what the orders of these contacts cover: after new or changed orders, a new
    contact, or a contact's new address. An opt-out recorded on an order given with an
    address that another contact now holds also applies to that contact (C7)."""
    if not contact_ids:
        return
    ids = set(contact_ids)
    holders = await session.execute(
        sa.select(CONTACT.c.id)
        .select_from(CONTACT.join(ORDER, ORDER.c.email == CONTACT.c.email))
        .where(ORDER.c.opt_out_used.is_(True), among(ORDER.c.contact_id, sorted(ids), session))
    )
    ids.update(holders.scalars())
    await _refresh(session, PROJECTIONS[1:], ids)


async def append_consent_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Add consent events to the ledger (an identical event is stored once) and bring the
    current consent of their contacts up to date."""
    await insert_ignoring_duplicates(session, CONSENT, rows, ("contact_id", "fingerprint"))
    await refresh_consent(session, {row["contact_id"] for row in rows})
