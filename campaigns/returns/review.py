"""The review queue (C20): what came back and maps to no delivery, or could not be read, waits
here for a person; nothing is guessed. A reviewer suppresses the address (as a hard bounce or a
complaint) or dismisses the report; each decision is kept with the report and logged."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.addresses import normalise_address
from campaigns.context import Context
from campaigns.errors import InvalidInput, NotFound
from campaigns.models import Contact, Delivery, InboundMessage
from campaigns.returns.intake import State
from campaigns.suppression.entries import active_entries, suppress

log = logging.getLogger("campaigns.review")

MESSAGE = InboundMessage.__table__  # type: ignore[attr-defined]
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
CONTACT = Contact.__table__  # type: ignore[attr-defined]

Kind = Literal["bounce", "complaint", "unsubscribe", "other"]
ReviewState = Literal["open", "resolved", "dismissed"]
Action = Literal["suppress_hard", "suppress_complaint", "dismiss"]

_STATES: dict[str, str] = {
    "open": State.REVIEW,
    "resolved": State.RESOLVED,
    "dismissed": State.DISMISSED,
}
_REVIEWED = tuple(_STATES.values())
SHOWN_BYTES = 64 * 1024  # of the raw report, in the review

_KIND = sa.case(
    (MESSAGE.c.form == "arf", "complaint"),
    (MESSAGE.c.recipient.like("unsubscribe%"), "unsubscribe"),
    (MESSAGE.c.recipient.like("bounces%") | (MESSAGE.c.channel == "relay"), "bounce"),
    else_="other",
)


@dataclass(frozen=True)
class ReviewItem:
    id: int
    kind: str
    state: str
    received_at: datetime
    channel: str
    why: str  # what kept it here: no delivery, unreadable, forged token ...
    status_code: str | None
    diagnostic: str | None
    feedback_type: str | None
    delivery_id: int | None
    reported_recipient: str | None  # the report's own recipient field: what a person checks
    note: str | None
    decided_at: datetime | None
    raw: str  # the report as it came (the first 64 KiB), for the reviewer's eyes only


async def review_items(
    session: AsyncSession,
    *,
    kind: Kind | None = None,
    state: ReviewState = "open",
    limit: int = 100,
) -> list[ReviewItem]:
    query = (
        sa.select(MESSAGE, _KIND.label("kind"))
        .where(MESSAGE.c.state == _STATES[state])
        .order_by(MESSAGE.c.id.desc())
        .limit(limit)
    )
    if kind is not None:
        query = query.where(_KIND == kind)  # noqa: SIM300
    rows = (await session.execute(query)).mappings().all()
    return [_item(row) for row in rows]


def _item(row: sa.RowMapping) -> ReviewItem:
    state = next(name for name, stored in _STATES.items() if stored == row["state"])
    return ReviewItem(
        id=row["id"],
        kind=row["kind"],
        state=state,
        received_at=row["received_at"],
        channel=row["channel"],
        why=row["rule"] or "",
        status_code=row["status_code"],
        diagnostic=row["diagnostic"],
        feedback_type=row["feedback_type"],
        delivery_id=row["delivery_id"],
        reported_recipient=row["reported_recipient"],
        note=row["note"],
        decided_at=row["decided_at"],
        raw=bytes(row["raw"][:SHOWN_BYTES]).decode("utf-8", "replace"),
    )


async def decide_review(
    session: AsyncSession,
    item_id: int,
    action: Action,
    *,
    note: str | None,
    actor: str,
    ctx: Context,
) -> ReviewItem:
    """A reviewer's decision on an open item. Suppressing needs an address: the delivery's,
    when the report names one, else the recipient the report itself gives (a person read it
    and decided; the machine would not). Never commits."""
    row = (
        (await session.execute(sa.select(MESSAGE).where(MESSAGE.c.id == item_id).with_for_update()))
        .mappings()
        .one_or_none()
    )
    if row is None or row["state"] not in _REVIEWED:
        raise NotFound("no such review item")
    if row["state"] != State.REVIEW:
        raise InvalidInput("this report was already reviewed", field="action", reason="reviewed")
    now = ctx.clock.now()
    if action == "dismiss":
        new_state = State.DISMISSED
    else:
        address, campaign_id = await _address_of(session, row)
        reason = "hard_bounce" if action == "suppress_hard" else "complaint"
        entries = await active_entries(session, address, ctx.hasher)
        if not any(entry.reason == reason for entry in entries):
            await suppress(
                session,
                address,
                reason=reason,
                channel="review",
                clock=ctx.clock,
                hasher=ctx.hasher,
                note=(note or f"review of report {item_id}")[:200],
                campaign_id=campaign_id,
            )
        new_state = State.RESOLVED
    await session.execute(
        sa.update(MESSAGE)
        .where(MESSAGE.c.id == item_id)
        .values(state=new_state, decided_at=now, note=(note or None) and note[:500])
    )
    # The log names the item, the decision and who took it, never the address.
    log.info("review item %s: %s by %s", item_id, action, actor)
    updated = (
        (
            await session.execute(
                sa.select(MESSAGE, _KIND.label("kind")).where(MESSAGE.c.id == item_id)
            )
        )
        .mappings()
        .one()
    )
    return _item(updated)


async def _address_of(session: AsyncSession, row: sa.RowMapping) -> tuple[str, str | None]:
    if row["delivery_id"] is not None:
        found = (
            await session.execute(
                sa.select(CONTACT.c.email, DELIVERY.c.campaign_id)
                .join(CONTACT, CONTACT.c.id == DELIVERY.c.contact_id)
                .where(DELIVERY.c.id == row["delivery_id"])
            )
        ).one_or_none()
        if found is not None:
            return found.email, found.campaign_id
    if row["reported_recipient"]:
        try:
            return normalise_address(row["reported_recipient"]), None
        except ValueError:
            pass
    raise InvalidInput(
        "this report names no address to suppress: dismiss it, or add a suppression by address",
        field="action",
        reason="no_address",
    )
