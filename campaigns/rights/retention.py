"""Retention that runs by itself (C34, C36): what has outlived its purpose goes, in batches, by
the periods of `[retention]`.

- A contact with no valid basis (no consent standing for any purpose) and no activity for
  `inactive_contact_months` is erased as by a request, except that no suppression entry is
  made (it is no objection: the person may come back with a new consent). Activity is what the
  person did: an order, a consent given, withdrawn or confirmed, the contact's creation. A mail
  we sent is not their activity, and an open never counts (C36).
- A delivery older than `delivery_log_months` (at least 12: a mail's unsubscribe link works for
  a year, C24) is deleted, unless it is still open.
- A bounce or complaint report older than `report_months` is deleted, raw and all, unless it is
  still waiting to be decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.clock import months_before
from campaigns.context import Context
from campaigns.models import ConsentEvent, CurrentConsent, InboundMessage, ShopOrder
from campaigns.rights.erasure import erase_people
from campaigns.rights.registry import CONTACT, DELIVERY, People
from campaigns.sending.states import OPEN_DELIVERIES

CONSENT = ConsentEvent.__table__  # type: ignore[attr-defined]
CURRENT = CurrentConsent.__table__  # type: ignore[attr-defined]
ORDER = ShopOrder.__table__  # type: ignore[attr-defined]
MESSAGE = InboundMessage.__table__  # type: ignore[attr-defined]
BATCH = 5000  # rows per transaction: short locks, and a crash loses at most one batch's work


@dataclass(frozen=True)
class Cutoffs:
    contacts: datetime
    deliveries: datetime
    reports: datetime

    @classmethod
    def now(cls, ctx: Context) -> Cutoffs:
        now, policy = ctx.clock.now(), ctx.config.retention
        return cls(
            contacts=months_before(now, policy.inactive_contact_months),
            deliveries=months_before(now, policy.delivery_log_months),
            reports=months_before(now, policy.report_months),
        )


@dataclass(frozen=True)
class Due:
    """What is due, by reason: counts only, never who."""

    inactive_contacts: int
    old_deliveries: int
    old_reports: int

    def __bool__(self) -> bool:
        return bool(self.inactive_contacts or self.old_deliveries or self.old_reports)


def _inactive(cutoff: datetime) -> sa.ColumnElement[bool]:
    contact = CONTACT.c.id
    return sa.and_(
        CONTACT.c.created_at < cutoff,
        ~sa.exists().where(CURRENT.c.contact_id == contact, CURRENT.c.granted.is_(True)),
        ~sa.exists().where(ORDER.c.contact_id == contact, ORDER.c.placed_at >= cutoff),
        ~sa.exists().where(
            CONSENT.c.contact_id == contact,
            sa.or_(CONSENT.c.captured_at >= cutoff, CONSENT.c.confirmed_at >= cutoff),
        ),
    )


def _old_delivery(cutoff: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(DELIVERY.c.queued_at < cutoff, DELIVERY.c.status.not_in(OPEN_DELIVERIES))


def _old_report(cutoff: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(MESSAGE.c.received_at < cutoff, MESSAGE.c.state != "pending")


async def retention_due(session: AsyncSession, ctx: Context) -> Due:
    """`python -m mailer retention --dry-run`: what would go now, by reason."""
    cut = Cutoffs.now(ctx)

    async def count(table: sa.Table, where: sa.ColumnElement[bool]) -> int:
        found = await session.execute(sa.select(sa.func.count()).select_from(table).where(where))
        return int(found.scalar_one())

    return Due(
        inactive_contacts=await count(CONTACT, _inactive(cut.contacts)),
        old_deliveries=await count(DELIVERY, _old_delivery(cut.deliveries)),
        old_reports=await count(MESSAGE, _old_report(cut.reports)),
    )


@dataclass(frozen=True)
class Cursor:
    """Where the last batch stopped, per table: each batch reads on from there, so a run
    reads each table once, not once per batch (a million contacts of which few are due)."""

    contact: str = ""
    delivery: int = 0
    report: int = 0


async def retention_batch(
    session: AsyncSession, ctx: Context, after: Cursor = Cursor(), limit: int = BATCH
) -> tuple[Due, Cursor | None]:
    """One batch of each after `after`: what went, and where to go on from (None: nothing
    is left). Never commits."""
    cut = Cutoffs.now(ctx)
    contacts = (
        await session.execute(
            sa.select(CONTACT.c.id, CONTACT.c.email)
            .where(CONTACT.c.id > after.contact, _inactive(cut.contacts))
            .order_by(CONTACT.c.id)
            .limit(limit)
        )
    ).all()
    if contacts:
        people = People(
            tuple(row.id for row in contacts),
            tuple(row.email for row in contacts),
            scan_reports=False,  # their reports are long past report_months
        )
        await erase_people(session, people, ctx, "retention", requested=False)
    deliveries = await _some(
        session, DELIVERY, _old_delivery(cut.deliveries), after.delivery, limit
    )
    reports = await _some(session, MESSAGE, _old_report(cut.reports), after.report, limit)
    done = Due(len(contacts), len(deliveries), len(reports))
    if not done:
        return done, None
    return done, Cursor(
        contacts[-1].id if contacts else after.contact,
        deliveries[-1] if deliveries else after.delivery,
        reports[-1] if reports else after.report,
    )


async def _some(
    session: AsyncSession, table: sa.Table, where: sa.ColumnElement[bool], after: int, limit: int
) -> list[int]:
    """Delete up to `limit` rows after id `after` that are due; their ids."""
    ids = await session.execute(
        sa.select(table.c.id).where(table.c.id > after, where).order_by(table.c.id).limit(limit)
    )
    chosen = list(ids.scalars())
    if chosen:
        await session.execute(sa.delete(table).where(table.c.id.in_(chosen)))
    return chosen
