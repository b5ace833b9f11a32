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
- A click or an open (only recorded with consent to tracking, C35) older than
  `tracking_months` is deleted; the links' aggregate counts stay (they name nobody).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.clock import months_before
from campaigns.context import Context
from campaigns.models import (
    ConsentEvent,
    CurrentConsent,
    MarketingProfile,
    Signup,
    SoftOptInObjection,
    TrackingEvent,
)
from campaigns.rights.erasure import erase_people
from campaigns.rights.registry import CONTACT, DELIVERY, MESSAGE, ORDER, People
from campaigns.sending.states import OPEN_DELIVERIES
from campaigns.suppression.entries import NewEntry, active_reasons, suppress_all

CONSENT = ConsentEvent.__table__  # type: ignore[attr-defined]
CURRENT = CurrentConsent.__table__  # type: ignore[attr-defined]
PROFILE = MarketingProfile.__table__  # type: ignore[attr-defined]
SIGNUP = Signup.__table__  # type: ignore[attr-defined]
EVENT = TrackingEvent.__table__  # type: ignore[attr-defined]
OBJECTION = SoftOptInObjection.__table__  # type: ignore[attr-defined]
BATCH = 10000  # rows per transaction: short locks, and a crash loses at most one batch's work


@dataclass(frozen=True)
class Cutoffs:
    contacts: datetime
    deliveries: datetime
    reports: datetime
    signups: datetime
    tracking: datetime

    @classmethod
    def now(cls, ctx: Context) -> Cutoffs:
        now, policy = ctx.clock.now(), ctx.config.retention
        return cls(
            contacts=months_before(now, policy.inactive_contact_months),
            deliveries=months_before(now, policy.delivery_log_months),
            reports=months_before(now, policy.report_months),
            signups=now - timedelta(days=policy.unconfirmed_signup_days),
            tracking=months_before(now, policy.tracking_months),
        )


@dataclass(frozen=True)
class Due:
    """What is due, by reason: counts only, never who."""

    inactive_contacts: int
    old_deliveries: int
    old_reports: int
    unconfirmed_signups: int = 0
    old_tracking_events: int = 0

    def __bool__(self) -> bool:
        return bool(
            self.inactive_contacts
            or self.old_deliveries
            or self.old_reports
            or self.unconfirmed_signups
            or self.old_tracking_events
        )


def _earliest(a: Any, b: Any) -> Any:
    return sa.case((a < b, a), else_=b)


def _inactive(cutoff: datetime) -> sa.ColumnElement[bool]:
    """No valid basis (no consent standing, or suppressed) and nothing the person did since
    the cutoff. Dates the shop sends are taken no later than when they reached us: a consent
    or an order dated in the future does not keep a contact for ever."""
    contact = CONTACT.c.id
    basis = sa.and_(
        sa.exists().where(CURRENT.c.contact_id == contact, CURRENT.c.granted.is_(True)),
        ~sa.exists().where(PROFILE.c.contact_id == contact, PROFILE.c.suppressed.is_(True)),
    )
    return sa.and_(
        CONTACT.c.created_at < cutoff,
        ~basis,
        ~sa.exists().where(
            ORDER.c.contact_id == contact,
            _earliest(ORDER.c.placed_at, ORDER.c.recorded_at) >= cutoff,
        ),
        ~sa.exists().where(
            CONSENT.c.contact_id == contact,
            CONSENT.c.valid.is_(True),
            sa.or_(
                _earliest(CONSENT.c.captured_at, CONSENT.c.recorded_at) >= cutoff,
                CONSENT.c.confirmed_at >= cutoff,
            ),
        ),
        # A sign-up of the address waiting for its confirmation is the person acting.
        ~sa.exists().where(SIGNUP.c.email == CONTACT.c.email, SIGNUP.c.created_at >= cutoff),
    )


def _old_delivery(cutoff: datetime) -> sa.ColumnElement[bool]:
    # From when the mail went out: its unsubscribe link works a year from then (C24).
    sent = sa.func.coalesce(DELIVERY.c.sent_at, DELIVERY.c.queued_at)
    return sa.and_(sent < cutoff, DELIVERY.c.status.not_in(OPEN_DELIVERIES))


def _old_report(cutoff: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(MESSAGE.c.received_at < cutoff, MESSAGE.c.state != "pending")


def _unconfirmed_signup(cutoff: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(SIGNUP.c.confirmed_at.is_(None), SIGNUP.c.created_at < cutoff)


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
        unconfirmed_signups=await count(SIGNUP, _unconfirmed_signup(cut.signups)),
        old_tracking_events=await count(EVENT, EVENT.c.at < cut.tracking),
    )


@dataclass(frozen=True)
class Cursor:
    """Where the last batch stopped, per table: each batch reads on from there, so a run
    reads each table once, not once per batch (a million contacts of which few are due)."""

    contact: str = ""
    delivery: int = 0
    report: int = 0
    tracking_event: int = 0


async def retention_batch(
    session: AsyncSession, ctx: Context, after: Cursor = Cursor(), limit: int = BATCH
) -> tuple[Due, Cursor | None]:
    """One batch of each after `after`: what went, and where to go on from (None: nothing
    is left). Never commits."""
    cut = Cutoffs.now(ctx)
    chosen = (
        await session.execute(
            sa.select(CONTACT.c.id)
            .where(CONTACT.c.id > after.contact, _inactive(cut.contacts))
            .order_by(CONTACT.c.id)
            .limit(limit)
        )
    ).scalars()
    ids = list(chosen)
    contacts: list[Any] = []
    if ids:
        # Their rows locked (a consent or an order for one of them now waits), then looked at
        # again: one that committed since the first look keeps its contact.
        await session.execute(
            sa.select(CONTACT.c.id)
            .where(CONTACT.c.id.in_(ids))
            .order_by(CONTACT.c.id)
            .with_for_update()
        )
        contacts = list(
            (
                await session.execute(
                    sa.select(CONTACT.c.id, CONTACT.c.email)
                    .where(CONTACT.c.id.in_(ids), _inactive(cut.contacts))
                    .order_by(CONTACT.c.id)
                )
            ).all()
        )
    if contacts:
        people = People(tuple(row.id for row in contacts), tuple(row.email for row in contacts))
        await _keep_opt_outs(session, people, ctx)
        await erase_people(session, people, ctx, "retention", requested=False)
    deliveries = await _some(
        session, DELIVERY, _old_delivery(cut.deliveries), after.delivery, limit
    )
    reports = await _some(session, MESSAGE, _old_report(cut.reports), after.report, limit)
    signups = await session.execute(sa.delete(SIGNUP).where(_unconfirmed_signup(cut.signups)))
    events = await _some(session, EVENT, EVENT.c.at < cut.tracking, after.tracking_event, limit)
    done = Due(
        len(contacts),
        len(deliveries),
        len(reports),
        signups.rowcount,  # type: ignore[attr-defined]
        len(events),
    )
    if not done:
        return done, None
    return done, Cursor(
        ids[-1] if ids else after.contact,
        deliveries[-1] if deliveries else after.delivery,
        reports[-1] if reports else after.report,
        events[-1] if events else after.tracking_event,
    )


async def _keep_opt_outs(session: AsyncSession, people: People, ctx: Context) -> None:
    """Who used the marketing opt-out when an order was placed must never get mail under the
    customer exception (C7), and that order goes with the contact; who ended the exception
    from a preference page objected to it (C38), and the objection goes too. The address keeps
    an `unsubscribe` entry instead, which only an explicit, confirmed consent lifts (C22)."""
    used = await session.execute(
        sa.select(ORDER.c.email)
        .where(ORDER.c.contact_id.in_(people.contact_ids), ORDER.c.opt_out_used.is_(True))
        .distinct()
    )
    ended = await session.execute(
        sa.select(CONTACT.c.email)
        .select_from(CONTACT.join(OBJECTION, OBJECTION.c.contact_id == CONTACT.c.id))
        .where(CONTACT.c.id.in_(people.contact_ids))
        .distinct()
    )
    notes = dict.fromkeys(ended.scalars(), "ended the customer exception on a preference page")
    notes.update(dict.fromkeys(used.scalars(), "used the opt-out at an order (C7)"))
    if not notes:
        return
    already = await active_reasons(session, sorted(notes), ctx.hasher)
    entries = [
        NewEntry(email, "unsubscribe", "retention", note=note)
        for email, note in sorted(notes.items())
        if not already.get(email)
    ]
    await suppress_all(session, entries, clock=ctx.clock, hasher=ctx.hasher)


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
