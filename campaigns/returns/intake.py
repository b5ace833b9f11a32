"""What comes back, from report to consequence (C17-C20, C37).

A report is stored as it came before anything else (`store_report`: the listener answers 250
only after that commit), then decided in one transaction (`decide_report`): read it, find the
delivery it is about, ask the decision table, and apply the verdict (the suppression, the
delivery's new state, the run's counts, the guard) together with the report's own new state.
A report is decided once: the first statement takes it out of `pending`, so two processes
resuming after a crash cannot both act on it. Relay events (`record_relay_event`) take the same
path from a JSON event instead of a mail.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.context import Context
from campaigns.models import CampaignRun, Contact, Delivery, InboundMessage
from campaigns.returns.inputs import RelayEventIn
from campaigns.returns.reading import Reading, read_report
from campaigns.returns.reputation import Tally, add_counts, domain_of, guard
from campaigns.returns.table import (
    READ_AT_MOST,
    Decision,
    Verdict,
    decide,
    status_in,
    without_addresses,
)
from campaigns.sending.states import DeliveryStatus
from campaigns.suppression.entries import active_entries, suppress
from campaigns.tokens import Kind, TokenSigner
from campaigns.validation import CONTROL

MESSAGE = InboundMessage.__table__  # type: ignore[attr-defined]
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
CONTACT = Contact.__table__  # type: ignore[attr-defined]
RUN = CampaignRun.__table__  # type: ignore[attr-defined]

REPORT_CAP = 256 * 1024  # what is kept of one report: a DSN is a few KiB; the rest is our mail


class State(StrEnum):
    PENDING = "pending"
    DECIDED = "decided"
    REVIEW = "review"
    RESOLVED = "resolved"  # reviewed: suppressed by a person
    DISMISSED = "dismissed"  # reviewed: nothing to do


async def store_report(
    session: AsyncSession,
    *,
    recipient: str,
    raw: bytes,
    ctx: Context,
    state: str = State.PENDING,
    rule: str | None = None,
    null_sender: bool = False,
) -> int:
    """Keep a report as it came, capped (C20). Never commits."""
    result = await session.execute(
        sa.insert(MESSAGE)
        .values(
            received_at=ctx.clock.now(),
            channel="smtp",
            recipient=recipient[:320],
            raw=raw[:REPORT_CAP],
            truncated=len(raw) > REPORT_CAP,
            null_sender=null_sender,
            state=state,
            rule=rule,
        )
        .returning(MESSAGE.c.id)
    )
    return int(result.scalar_one())


async def set_aside(session: AsyncSession, report_id: int, why: str) -> None:
    """A report whose decision failed goes to review rather than waiting for a restart."""
    await session.execute(
        sa.update(MESSAGE)
        .where(MESSAGE.c.id == report_id, MESSAGE.c.state == State.PENDING)
        .values(state=State.REVIEW, rule=why[:100])
    )


async def pending_reports(session: AsyncSession, limit: int = 10_000) -> list[int]:
    """Reports stored but not decided: what a listener resumes with after a crash."""
    rows = await session.execute(
        sa.select(MESSAGE.c.id)
        .where(MESSAGE.c.state == State.PENDING)
        .order_by(MESSAGE.c.id)
        .limit(limit)
    )
    return list(rows.scalars())


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    rule: str
    delivery_id: int | None
    suppressed: str | None = None  # the suppression reason, when the verdict made one
    paused: str | None = None  # the guard's reason, when the run paused itself


@dataclass(frozen=True)
class Stored:
    """A report as stored, to be read (outside any transaction) and decided."""

    id: int
    recipient: str
    raw: bytes
    null_sender: bool


async def stored_report(session: AsyncSession, report_id: int) -> Stored | None:
    row = (
        await session.execute(
            sa.select(MESSAGE.c.recipient, MESSAGE.c.raw, MESSAGE.c.null_sender).where(
                MESSAGE.c.id == report_id, MESSAGE.c.state == State.PENDING
            )
        )
    ).one_or_none()
    return (
        None if row is None else Stored(report_id, row.recipient, bytes(row.raw), row.null_sender)
    )


def read_stored(report: Stored) -> tuple[Reading, Decision]:
    """Read and judge a report: pure, CPU only, so the caller does it before its transaction
    (and off the event loop): a long report holds no lock while it is read."""
    reading = read_report(report.raw)
    return reading, verdict_of(reading, null_sender=report.null_sender)


async def decide_report(
    session: AsyncSession,
    report: Stored,
    reading: Reading,
    decision: Decision,
    *,
    ctx: Context,
    signer: TokenSigner,
) -> Outcome | None:
    """Apply a read report; None when it was not pending any more (decided elsewhere). The
    first statement takes it out of `pending`, so it is decided once. Never commits."""
    claimed = await session.execute(
        sa.update(MESSAGE)
        .where(MESSAGE.c.id == report.id, MESSAGE.c.state == State.PENDING)
        .values(state=State.DECIDED, decided_at=ctx.clock.now())
    )
    if not claimed.rowcount:  # type: ignore[attr-defined]
        return None
    delivery_id, why_not = _delivery_named(report.recipient, reading.references, signer)
    if delivery_id is None and decision.verdict not in _HARMLESS:
        decision = Decision(Verdict.REVIEW, why_not)
    outcome = await _apply(session, report.id, decision, delivery_id, ctx=ctx, channel="bounce")
    await _record(session, report.id, outcome, reading)
    return outcome


def verdict_of(reading: Reading, *, null_sender: bool = True) -> Decision:
    """What a reading says, by the decision table (C17-C19). Prose is read as a bounce only
    when something says it is one (the null envelope sender bounces come with, a mailer
    daemon, a bounce's subject, flufl.bounce's detectors): a person's or a ticket system's
    reply ("that discount code does not exist") is for a person to read, not a bounce."""
    if reading.form == "prose" and not (null_sender or reading.looks_like_report):
        return Decision(Verdict.REVIEW, "a reply, not a delivery report")
    if reading.form == "unreadable":
        return Decision(Verdict.REVIEW, "cannot be read")
    if reading.form == "auto_reply":
        return Decision(Verdict.AUTO_REPLY, "an automatic reply (RFC 3834)")
    if reading.form == "arf":
        if reading.feedback_type in ("abuse", "opt-out"):
            return Decision(Verdict.COMPLAINT, f"complaint ({reading.feedback_type})")
        return Decision(Verdict.FEEDBACK, f"feedback ({reading.feedback_type or 'no type'})")
    if reading.action in ("delivered", "relayed", "expanded"):
        return Decision(Verdict.DELIVERED, f"success (Action: {reading.action})")
    if reading.action == "delayed":  # a warning, not the end: soft whatever it says (C18)
        return Decision(Verdict.SOFT, "delayed (Action: delayed)")
    decision = decide(reading.status, reading.diagnostic)
    if decision.verdict == Verdict.REVIEW and reading.permanence == "temporary":
        return Decision(Verdict.SOFT, "a warning: the MTA keeps trying")
    return decision


# Verdicts that change nothing: recorded as decided even when they name no delivery.
_HARMLESS = frozenset({Verdict.DELIVERED, Verdict.AUTO_REPLY, Verdict.FEEDBACK})
_NO_CONSEQUENCE = frozenset({Verdict.REVIEW, Verdict.AUTO_REPLY, Verdict.FEEDBACK})
_NEW_STATUS = {Verdict.HARD: DeliveryStatus.BOUNCED, Verdict.BLOCK: DeliveryStatus.FAILED}

_VERP = re.compile(r"\bbounces\+([a-z2-7]+)@", re.IGNORECASE)
_MESSAGE_ID = re.compile(r"<([a-z2-7]{20,120})@", re.IGNORECASE)
_UNSUBSCRIBE = re.compile(r"(?:unsubscribe\+|/u/)([a-z2-7]{20,120})\b", re.IGNORECASE)
_REFERENCES = ((_VERP, Kind.BOUNCE), (_MESSAGE_ID, Kind.MESSAGE), (_UNSUBSCRIBE, Kind.UNSUBSCRIBE))


def _delivery_named(
    recipient: str, references: tuple[str, ...], signer: TokenSigner
) -> tuple[int | None, str]:
    """The delivery a report is about. The VERP token it was sent to is authoritative (the
    report's own recipient fields are only recorded: forwarding and aliases change them); a
    report sent to plain `bounces@` (a feedback loop's address) is found by the signed ids in
    the returned message, never by guessing from an address (C19)."""
    local = recipient.rpartition("@")[0]
    _, plus, token = local.partition("+")
    if plus and token:
        delivery_id = signer.read_delivery(Kind.BOUNCE, token)
        return delivery_id, "forged or unknown token"
    for reference in references:
        for pattern, kind in _REFERENCES:
            for match in pattern.finditer(reference):
                delivery_id = signer.read_delivery(kind, match.group(1))
                if delivery_id is not None:
                    return delivery_id, ""
    return None, "maps to no delivery"


async def _apply(
    session: AsyncSession,
    report_id: int | None,
    decision: Decision,
    delivery_id: int | None,
    *,
    ctx: Context,
    channel: str,
) -> Outcome:
    """The verdict's consequences, in the report's transaction: the suppression, the delivery's
    state, the run's counts and the guard (C17-C19, C37)."""
    verdict = decision.verdict
    target = None
    if delivery_id is not None and verdict not in _NO_CONSEQUENCE:
        target = (
            await session.execute(
                sa.select(
                    DELIVERY.c.id,
                    DELIVERY.c.run,
                    DELIVERY.c.status,
                    DELIVERY.c.campaign_id,
                    DELIVERY.c.contact_id,
                    CONTACT.c.email,
                )
                .join(CONTACT, CONTACT.c.id == DELIVERY.c.contact_id)
                .where(DELIVERY.c.id == delivery_id)
                # Two reports of one delivery decided at once (two processes) take turns:
                # the second sees the first's verdict, so neither counts it twice.
                .with_for_update(of=DELIVERY)
            )
        ).one_or_none()
        if target is None:  # erased, or past its retention
            return Outcome(Verdict.REVIEW, "the delivery it names is gone", delivery_id)
    if target is None:
        return Outcome(verdict, decision.rule, delivery_id)

    suppressed = None
    if verdict == Verdict.HARD:
        suppressed = "hard_bounce"
    elif verdict == Verdict.COMPLAINT:
        suppressed = "complaint"
    elif verdict == Verdict.SOFT:
        limit = ctx.config.marketing.soft_bounce_limit
        if await soft_bounces_in_a_row(session, target.contact_id, also=target.id) >= limit:
            suppressed = "soft_bounce_limit"
    if suppressed is not None:
        existing = await active_entries(session, target.email, ctx.hasher)
        if any(entry.reason == suppressed for entry in existing):
            suppressed = None  # one entry per reason is enough
        else:
            await suppress(
                session,
                target.email,
                reason=suppressed,
                channel=channel if verdict != Verdict.COMPLAINT else "complaint",
                clock=ctx.clock,
                hasher=ctx.hasher,
                note=decision.rule[:200],
                campaign_id=target.campaign_id,
            )
    new_status = _NEW_STATUS.get(verdict)
    counted = target.status == DeliveryStatus.SENT
    if new_status is not None and counted:
        await session.execute(
            sa.update(DELIVERY)
            .where(DELIVERY.c.id == target.id)
            .values(status=new_status, last_error=f"reported: {decision.rule}"[:300])
        )
    paused = None
    first_of_its_kind = not (
        await session.execute(
            sa.select(
                sa.exists().where(
                    MESSAGE.c.delivery_id == target.id,
                    MESSAGE.c.verdict == verdict,
                    MESSAGE.c.id != (report_id or 0),
                )
            )
        )
    ).scalar_one()
    if target.run and first_of_its_kind:
        tally = Tally()
        if verdict in (Verdict.SOFT, Verdict.COMPLAINT) or counted:
            tally.add_verdict(domain_of(target.email), verdict)
        await add_counts(session, target.run, tally)
        if verdict in (Verdict.COMPLAINT, Verdict.BLOCK):
            paused = await guard(session, target.run, ctx)
    return Outcome(verdict, decision.rule, delivery_id, suppressed, paused)


async def soft_bounces_in_a_row(
    session: AsyncSession, contact_id: str, *, also: int | None = None
) -> int:
    """How many of the contact's messages soft-bounced in a row, with no delivery between them
    (C18): counted back from the newest one that soft-bounced. Messages sent after it are not
    "between": their own reports may still come. `also` is a delivery being decided now."""
    soft = sa.exists().where(
        MESSAGE.c.delivery_id == DELIVERY.c.id,
        MESSAGE.c.verdict == Verdict.SOFT,
    )
    fine = sa.exists().where(
        MESSAGE.c.delivery_id == DELIVERY.c.id,
        MESSAGE.c.verdict.in_((Verdict.DELIVERED, Verdict.COMPLAINT)),
    )
    rows = await session.execute(
        sa.select(DELIVERY.c.id, soft.label("soft"), fine.label("fine"))
        .where(DELIVERY.c.contact_id == contact_id, DELIVERY.c.sent_at.is_not(None))
        .order_by(DELIVERY.c.sent_at.desc(), DELIVERY.c.id.desc())
    )
    count = 0
    for delivery_id, was_soft, was_fine in rows.all():
        bounced = (was_soft or delivery_id == also) and not was_fine
        if bounced:
            count += 1
        elif count:
            break
    return count


async def _record(
    session: AsyncSession, report_id: int, outcome: Outcome, reading: Reading | None
) -> None:
    values: dict[str, object] = {
        "verdict": outcome.verdict,
        "rule": outcome.rule[:100],
        "delivery_id": outcome.delivery_id,
        "state": State.REVIEW if outcome.verdict == Verdict.REVIEW else State.DECIDED,
    }
    if reading is not None:
        values.update(
            form=reading.form,
            status_code=reading.status,
            diagnostic=mask_addresses(reading.diagnostic[:READ_AT_MOST])[:300] or None,
            feedback_type=_field(reading.feedback_type, 32),
            reported_recipient=_field(reading.reported_recipient, 320),
        )
    await session.execute(sa.update(MESSAGE).where(MESSAGE.c.id == report_id).values(**values))


def mask_addresses(text: str) -> str:
    """Text without anyone's address, on one line and without control characters (PostgreSQL
    text holds no NUL): for the stored diagnostic, the review and the logs."""
    return without_addresses(CONTROL.sub(" ", text))


def _field(value: str | None, size: int) -> str | None:
    """A value from the report as a column takes it: no control characters, cut to size."""
    return CONTROL.sub("", value or "")[:size] or None


# ---- relay events ------------------------------------------------------------------------


_RELAY_VERDICTS = {
    "hard": Verdict.HARD,
    "soft": Verdict.SOFT,
    "complaint": Verdict.COMPLAINT,
    "delivery": Verdict.DELIVERED,
}


async def record_relay_event(
    session: AsyncSession, event: RelayEventIn, *, ctx: Context, signer: TokenSigner
) -> Outcome | None:
    """A relay's webhook event, decided like a mailed report. None: the same event (message,
    type, timestamp) came before, and nothing changes. Never commits."""
    delivery_id = _relay_delivery(event, signer)
    reference = str(delivery_id) if delivery_id is not None else (event.message_id or event.token)
    key = f"{reference}:{event.type}:{_utc_iso(event.timestamp)}"[:200]
    seen = await session.execute(sa.select(MESSAGE.c.id).where(MESSAGE.c.event_key == key))
    if seen.first() is not None:
        return None
    decision = _relay_decision(event)
    raw = json.dumps(event.model_dump(mode="json"), sort_keys=True).encode()
    result = await session.execute(
        sa.insert(MESSAGE)
        .values(
            received_at=ctx.clock.now(),
            channel="relay",
            recipient="relay",
            raw=raw[:REPORT_CAP],
            truncated=False,
            null_sender=False,
            state=State.DECIDED,
            decided_at=ctx.clock.now(),
            event_key=key,
        )
        .returning(MESSAGE.c.id)
    )
    report_id = int(result.scalar_one())
    if delivery_id is None:
        decision = Decision(Verdict.REVIEW, "maps to no delivery")
    outcome = await _apply(session, report_id, decision, delivery_id, ctx=ctx, channel="relay")
    await _record(session, report_id, outcome, None)
    await session.execute(
        sa.update(MESSAGE)
        .where(MESSAGE.c.id == report_id)
        .values(
            form="relay",
            status_code=event.status,
            diagnostic=mask_addresses(event.diagnostic or "")[:300] or None,
            feedback_type="abuse" if event.type == "complaint" else None,
        )
    )
    return outcome


def _relay_decision(event: RelayEventIn) -> Decision:
    """The table decides what the status and diagnostic say (a relay's "hard" with a 5.7.1
    is a block, C17); the relay's own type only when they say nothing readable."""
    if event.type in ("complaint", "delivery"):
        verdict = _RELAY_VERDICTS[event.type]
        return Decision(verdict, f"relay: {event.type}")
    status = event.status or status_in(event.diagnostic or "")
    decision = decide(status, event.diagnostic or "")
    if decision.verdict == Verdict.REVIEW:
        return Decision(_RELAY_VERDICTS[event.type], f"relay: {event.type}")
    return decision


def _relay_delivery(event: RelayEventIn, signer: TokenSigner) -> int | None:
    if event.token:
        token = event.token
        match = _VERP.search(token)
        if match:
            token = match.group(1)
        found = signer.read_delivery(Kind.BOUNCE, token)
        if found is not None:
            return found
    if event.message_id:
        match = _MESSAGE_ID.search(
            event.message_id if "<" in event.message_id else f"<{event.message_id}"
        )
        if match:
            return signer.read_delivery(Kind.MESSAGE, match.group(1))
    return None


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
