"""Contacts pushed by the shop: validation, refusals, and the set-based upsert.

One call handles one contact or a batch of a thousand with the same handful of statements, so
the single and the batch endpoint cannot drift apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from campaigns.clock import months_before
from campaigns.config import BusinessConfig
from campaigns.context import Context
from campaigns.db import among, dialect_insert, insert_ignoring_duplicates, insert_new_rows
from campaigns.errors import Conflict, DomainError, InvalidInput
from campaigns.evidence.consent import consent_row, refusal_reason
from campaigns.evidence.inputs import ContactIn
from campaigns.evidence.projections import refresh_evidence
from campaigns.models import ConsentEvent, Contact, ContactHash, OrderCategory, ShopOrder
from campaigns.suppression.entries import suppressed_among

# Sources that are not direct collection by the shop (C11), whatever `first_party` says.
NOT_FIRST_PARTY_CHANNELS = frozenset(
    {"purchased_list", "rented_list", "broker", "partner", "co_registration", "list_rental"}
)
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Refusal:
    item: str
    reason: str


@dataclass
class IngestResult:
    index: int
    result: Literal["created", "updated", "rejected"]
    contact_id: str | None = None
    refused: list[Refusal] = field(default_factory=list)
    error: DomainError | None = None


def check_contact(item: ContactIn, config: BusinessConfig, now: datetime) -> None:
    """Raise InvalidInput for content the service refuses outright (nothing is stored)."""
    if not item.source.first_party or item.source.channel in NOT_FIRST_PARTY_CHANNELS:
        raise InvalidInput(
            "contacts not collected directly by the shop are refused for marketing (rule C11)",
            field="source.first_party" if not item.source.first_party else "source.channel",
            reason="not_first_party",
        )
    purposes = config.marketing.purposes
    for i, consent in enumerate(item.consents):
        if consent.purpose not in purposes:
            raise InvalidInput(
                f"unknown purpose '{consent.purpose}' (known: {', '.join(purposes)})",
                field=f"consents[{i}].purpose",
                reason="unknown_purpose",
            )
    seen: set[str] = set()
    for i, order in enumerate(item.orders):
        if order.id in seen:
            raise InvalidInput(
                f"order '{order.id}' is listed twice", field=f"orders[{i}].id", reason="duplicate"
            )
        seen.add(order.id)
        if order.placed_at > now + CLOCK_SKEW:
            raise InvalidInput(
                "placed_at is in the future", field=f"orders[{i}].placed_at", reason="future"
            )
        for j, category in enumerate(order.categories):
            if category not in config.categories.names:
                raise InvalidInput(
                    f"unknown category '{category}'",
                    field=f"orders[{i}].categories[{j}]",
                    reason="unknown_category",
                )


def item_refusals(item: ContactIn, config: BusinessConfig, now: datetime) -> list[Refusal]:
    """The items of a push that give no basis, and why (C2, C4-C7, C10)."""
    refused = [
        Refusal(f"consents[{i}]", reason)
        for i, consent in enumerate(item.consents)
        if (reason := refusal_reason(consent, now)) is not None
    ]
    window_start = months_before(now, config.marketing.soft_opt_in_months)
    for i, order in enumerate(item.orders):
        reason = None
        if order.marketing_opt_out_used:
            reason = "opted_out_at_collection"
        elif not order.marketing_opt_out_offered:
            reason = "opt_out_not_offered"
        elif order.status != "completed":
            reason = "order_not_completed"
        elif order.placed_at <= window_start:
            reason = "lapsed"
        if reason:
            refused.append(Refusal(f"orders[{i}]", reason))
    return refused


def _rounds(items: Sequence[tuple[int, ContactIn]]) -> list[list[tuple[int, ContactIn]]]:
    """Split items so that no round touches one contact twice (a batch may repeat a contact;
    later items then apply after earlier ones)."""
    last_round: dict[str, int] = {}
    rounds: list[list[tuple[int, ContactIn]]] = []
    for index, item in items:
        keys = [f"e:{item.email}"] + ([f"x:{item.external_id}"] if item.external_id else [])
        number = max((last_round.get(k, -1) for k in keys), default=-1) + 1
        for key in keys:
            last_round[key] = number
        if number == len(rounds):
            rounds.append([])
        rounds[number].append((index, item))
    return rounds


async def ingest_contacts(
    session: AsyncSession, items: Sequence[tuple[int, ContactIn]], ctx: Context
) -> list[IngestResult]:
    """Create or update contacts with their orders and consent evidence. Never commits.

    Items must have passed `check_contact`. An item that conflicts with stored data (an order
    id of another contact, an external id that names another contact) is rejected alone.
    """
    outcomes: list[IngestResult] = []
    for round_items in _rounds(items):
        outcomes.extend(await _ingest_round(session, round_items, ctx))
    outcomes.sort(key=lambda outcome: outcome.index)
    return outcomes


@dataclass
class _Writes:
    """The rows one round writes. Rows that cannot exist yet (new contacts, their hashes,
    orders not found in the lookup, consent of new contacts) take the bulk path."""

    new_contacts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    rehashed: list[str] = field(default_factory=list)  # existing contacts with a new address
    hashes: list[dict[str, Any]] = field(default_factory=list)
    new_orders: list[dict[str, Any]] = field(default_factory=list)
    known_orders: list[dict[str, Any]] = field(default_factory=list)
    new_categories: list[dict[str, Any]] = field(default_factory=list)
    known_categories: list[dict[str, Any]] = field(default_factory=list)
    new_consents: list[dict[str, Any]] = field(default_factory=list)
    other_consents: list[dict[str, Any]] = field(default_factory=list)


async def _ingest_round(
    session: AsyncSession, items: Sequence[tuple[int, ContactIn]], ctx: Context
) -> list[IngestResult]:
    now = ctx.clock.now()
    emails = [item.email for _, item in items]
    external_ids = [item.external_id for _, item in items if item.external_id]
    found = await session.execute(
        sa.select(col(Contact.id), col(Contact.email), col(Contact.external_id)).where(
            sa.or_(
                among(col(Contact.email), emails, session),
                among(col(Contact.external_id), external_ids, session),
            )
        )
    )
    by_email: dict[str, tuple[str, str | None]] = {}
    by_external: dict[str, str] = {}
    stored_email: dict[str, str] = {}
    for contact_id, email, external_id in found:
        by_email[email] = (contact_id, external_id)
        stored_email[contact_id] = email
        if external_id:
            by_external[external_id] = contact_id
    order_ids = [order.id for _, item in items for order in item.orders]
    order_owner: dict[str, str] = {}
    if order_ids:
        order_owner = dict(
            (
                await session.execute(
                    sa.select(col(ShopOrder.id), col(ShopOrder.contact_id)).where(
                        among(col(ShopOrder.id), order_ids, session)
                    )
                )
            ).all()
        )
    stored_orders = set(order_owner)
    suppressed = await suppressed_among(session, emails, ctx.hasher)

    outcomes: list[IngestResult] = []
    writes = _Writes()
    for index, item in items:
        try:
            contact_id, is_new = _resolve(item, by_email, by_external)
            _claim_orders(item, contact_id, order_owner)
        except Conflict as exc:
            outcomes.append(IngestResult(index, "rejected", error=exc))
            continue
        _plan_contact(writes, item, contact_id, is_new, stored_email, stored_orders, ctx, now)
        refused = item_refusals(item, ctx.config, now)
        if item.email in suppressed:
            refused.insert(0, Refusal("email", "suppressed"))
        outcomes.append(
            IngestResult(index, "created" if is_new else "updated", contact_id, refused=refused)
        )
    await _write(session, writes)
    return outcomes


def _plan_contact(
    writes: _Writes,
    item: ContactIn,
    contact_id: str,
    is_new: bool,
    stored_email: dict[str, str],
    stored_orders: set[str],
    ctx: Context,
    now: datetime,
) -> None:
    if is_new:
        writes.new_contacts.append(
            {
                "id": contact_id,
                "email": item.email,
                "external_id": item.external_id,
                "name": item.name,
                "locale": item.locale,
                "source_channel": item.source.channel,
                "source_url": item.source.url,
                "created_at": now,
                "updated_at": now,
            }
        )
    else:
        writes.updates.append(
            {
                "b_id": contact_id,
                "b_email": item.email,
                "b_external_id": item.external_id,
                "b_name": item.name,
                "b_locale": item.locale,
                "b_now": now,
            }
        )
    if is_new or stored_email[contact_id] != item.email:
        if not is_new:
            writes.rehashed.append(contact_id)
        writes.hashes.extend(
            {"contact_id": contact_id, "key_id": key_id, "address_hash": digest}
            for key_id, digest in ctx.hasher.keyed_hashes(item.email)
        )
    for order in item.orders:
        known = order.id in stored_orders
        (writes.known_orders if known else writes.new_orders).append(
            {
                "id": order.id,
                "contact_id": contact_id,
                "email": item.email,
                "placed_at": order.placed_at,
                "status": order.status,
                "opt_out_offered": order.marketing_opt_out_offered,
                "opt_out_used": order.marketing_opt_out_used,
                "recorded_at": now,
            }
        )
        (writes.known_categories if known else writes.new_categories).extend(
            {"order_id": order.id, "category": category}
            for category in dict.fromkeys(order.categories)
        )
    rows = {
        row["fingerprint"]: row
        for row in (consent_row(c, contact_id=contact_id, now=now) for c in item.consents)
    }
    (writes.new_consents if is_new else writes.other_consents).extend(rows.values())


def _resolve(
    item: ContactIn,
    by_email: dict[str, tuple[str, str | None]],
    by_external: dict[str, str],
) -> tuple[str, bool]:
    """The contact this item is about: by normalised email, else by external id, else new."""
    match_email = by_email.get(item.email)
    match_external = by_external.get(item.external_id) if item.external_id else None
    if match_email is not None:
        contact_id, stored_external = match_email
        if match_external is not None and match_external != contact_id:
            raise Conflict(
                "this email and this external_id belong to two different contacts",
                field="external_id",
                reason="identity_conflict",
            )
        if item.external_id and stored_external and stored_external != item.external_id:
            raise Conflict(
                "the contact with this email has another external_id",
                field="external_id",
                reason="identity_conflict",
            )
        return contact_id, False
    if match_external is not None:
        return match_external, False  # the customer changed address
    return uuid.uuid4().hex, True


def _claim_orders(item: ContactIn, contact_id: str, order_owner: dict[str, str]) -> None:
    for i, order in enumerate(item.orders):
        owner = order_owner.get(order.id)
        if owner is not None and owner != contact_id:
            raise Conflict(
                f"order '{order.id}' belongs to another contact",
                field=f"orders[{i}].id",
                reason="order_of_another_contact",
            )
    for order in item.orders:
        order_owner[order.id] = contact_id


async def _write(session: AsyncSession, writes: _Writes) -> None:
    contact = Contact.__table__  # type: ignore[attr-defined]
    await insert_new_rows(session, contact, writes.new_contacts)
    if writes.updates:
        await session.execute(
            sa.update(contact)
            .where(contact.c.id == sa.bindparam("b_id"))
            .values(
                email=sa.bindparam("b_email"),
                external_id=sa.func.coalesce(sa.bindparam("b_external_id"), contact.c.external_id),
                name=sa.func.coalesce(sa.bindparam("b_name"), contact.c.name),
                locale=sa.func.coalesce(sa.bindparam("b_locale"), contact.c.locale),
                updated_at=sa.bindparam("b_now"),
            ),
            writes.updates,
        )
    hashes = ContactHash.__table__  # type: ignore[attr-defined]
    if writes.rehashed:
        await session.execute(hashes.delete().where(hashes.c.contact_id.in_(writes.rehashed)))
    await insert_new_rows(session, hashes, writes.hashes)

    order = ShopOrder.__table__  # type: ignore[attr-defined]
    await insert_new_rows(session, order, writes.new_orders)
    if writes.known_orders:
        stmt = dialect_insert(session, order)
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={
                "status": stmt.excluded.status,
                "opt_out_offered": stmt.excluded.opt_out_offered,
                # Once used, an opt-out stays used (C7).
                "opt_out_used": sa.or_(order.c.opt_out_used, stmt.excluded.opt_out_used),
            },
            where=order.c.contact_id == stmt.excluded.contact_id,
        )
        await session.execute(stmt, writes.known_orders)
    category = OrderCategory.__table__  # type: ignore[attr-defined]
    await insert_new_rows(session, category, writes.new_categories)
    await insert_ignoring_duplicates(
        session, category, writes.known_categories, ("order_id", "category")
    )
    consent = ConsentEvent.__table__  # type: ignore[attr-defined]
    await insert_new_rows(session, consent, writes.new_consents)
    await insert_ignoring_duplicates(
        session, consent, writes.other_consents, ("contact_id", "fingerprint")
    )
    # The projections the audience query reads, in the same transaction (projections.py).
    # A new contact or a new address can be one whose opt-out is on record already (C7).
    await refresh_evidence(
        session,
        consent_of={row["contact_id"] for row in writes.new_consents + writes.other_consents},
        purchases_of={row["contact_id"] for row in writes.new_orders + writes.known_orders}
        | {row["id"] for row in writes.new_contacts}
        | set(writes.rehashed),
    )
