"""What comes back, from report to consequence (C17-C20, C37).

A report is stored as it came before anything else (`STORE`: the listener answers 250
only after that commit), then decided in one transaction (`decide_reports`): read it, find the
delivery it is about, ask the decision table, and apply the verdict (the suppression, the
delivery's new state, the run's counts, the guard) together with the report's own new state.
Both take reports in batches, a few statements for a few hundred reports, so a feedback loop's
burst is decided as fast as it comes. A report is decided once: the first statement takes it
out of `pending`, so two processes resuming after a crash cannot both act on it. Relay events
(`record_relay_event`) take the same path from a JSON event instead of a mail.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.addresses import without_addresses
from campaigns.context import Context
from campaigns.db import among
from campaigns.models import CampaignRun, Contact, Delivery, InboundMessage
from campaigns.returns.inputs import RelayEventIn
from campaigns.returns.judging import Judged, Stored
from campaigns.returns.reputation import Tally, add_counts, domain_of, guard
from campaigns.returns.table import (
    READ_AT_MOST,
    Decision,
    Verdict,
    decide,
    status_in,
)
from campaigns.sending.states import DeliveryStatus
from campaigns.suppression.entries import NewEntry, active_reasons, suppress_all
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


@dataclass(frozen=True)
class Arrival:
    """A mail that came to one of our addresses, as it came."""

    recipient: str
    raw: bytes
    null_sender: bool = False


# Keeps reports as they came (`report_rows`), one statement that commits by itself: the
# listener's store before its 250s, many reports at once. Returns their ids in order.
STORE = sa.insert(MESSAGE).returning(MESSAGE.c.id, sort_by_parameter_order=True)


def report_rows(
    arrivals: Sequence[Arrival],
    *,
    ctx: Context,
    state: str = State.PENDING,
    rule: str | None = None,
) -> list[dict[str, Any]]:
    """The rows of `STORE` for these reports, each capped (C20)."""
    now = ctx.clock.now()
    return [
        {
            "received_at": now,
            "channel": "smtp",
            "recipient": arrival.recipient[:320],
            "raw": arrival.raw[:REPORT_CAP],
            "truncated": len(arrival.raw) > REPORT_CAP,
            "null_sender": arrival.null_sender,
            "state": state,
            "rule": rule,
        }
        for arrival in arrivals
    ]


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
    report_id: int
    verdict: Verdict
    rule: str
    delivery_id: int | None
    suppressed: str | None = None  # the suppression reason, when the verdict made one
    paused: str | None = None  # the guard's reason, when the run paused itself


async def stored_reports(session: AsyncSession, report_ids: Sequence[int]) -> list[Stored]:
    """The reports of these ids that are still pending, to be read again (after a restart,
    a retry, or from a backlog too long to keep in memory)."""
    if not report_ids:
        return []
    rows = await session.execute(
        sa.select(MESSAGE.c.id, MESSAGE.c.recipient, MESSAGE.c.raw, MESSAGE.c.null_sender)
        .where(among(MESSAGE.c.id, report_ids, session), MESSAGE.c.state == State.PENDING)
        .order_by(MESSAGE.c.id)
    )
    return [Stored(row.id, row.recipient, bytes(row.raw), row.null_sender) for row in rows.all()]


async def decide_reports(
    session: AsyncSession, judged: Sequence[Judged], *, ctx: Context, signer: TokenSigner
) -> list[Outcome]:
    """Apply read reports, as many as came, in a few statements for the lot. Returns the
    outcome of each one still pending (one decided elsewhere meanwhile is left out). The
    first statement takes them out of `pending`, so each is decided once. Never commits."""
    if not judged:
        return []
    claimed = set(
        (
            await session.execute(
                sa.update(MESSAGE)
                .where(
                    among(MESSAGE.c.id, [j.report.id for j in judged], session),
                    MESSAGE.c.state == State.PENDING,
                )
                .values(state=State.DECIDED, decided_at=ctx.clock.now())
                .returning(MESSAGE.c.id)
            )
        ).scalars()
    )
    verdicts, readings = [], []
    for j in judged:
        if j.report.id not in claimed:
            continue
        delivery_id, why_not = _delivery_named(j.report.recipient, j.reading.references, signer)
        decision = j.decision
        if delivery_id is None and decision.verdict not in _HARMLESS:
            decision = Decision(Verdict.REVIEW, why_not)
        verdicts.append(Verdicted(j.report.id, decision, delivery_id))
        readings.append(j.reading)
    outcomes = await _apply(session, verdicts, ctx=ctx, channel="bounce")
    await _record(
        session,
        [
            _recorded(
                outcome,
                form=reading.form,
                status_code=reading.status,
                diagnostic=reading.diagnostic,
                feedback_type=reading.feedback_type,
                reported_recipient=reading.reported_recipient,
            )
            for outcome, reading in zip(outcomes, readings, strict=True)
        ],
    )
    return outcomes


# Verdicts that change nothing: recorded as decided even when they name no delivery.
_HARMLESS = frozenset({Verdict.DELIVERED, Verdict.AUTO_REPLY, Verdict.FEEDBACK})
_NO_CONSEQUENCE = frozenset({Verdict.REVIEW, Verdict.AUTO_REPLY, Verdict.FEEDBACK})
_NEW_STATUS = {Verdict.HARD: DeliveryStatus.BOUNCED, Verdict.BLOCK: DeliveryStatus.FAILED}
_SUPPRESSES = {Verdict.HARD: "hard_bounce", Verdict.COMPLAINT: "complaint"}
_GUARDED = frozenset({Verdict.COMPLAINT, Verdict.BLOCK})  # what the guard looks at (C37)

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


@dataclass(frozen=True)
class Verdicted:
    """A report's verdict and the delivery it names, to be applied."""

    report_id: int
    decision: Decision
    delivery_id: int | None


async def _apply(
    session: AsyncSession, verdicts: Sequence[Verdicted], *, ctx: Context, channel: str
) -> list[Outcome]:
    """The verdicts' consequences, in their reports' transaction: the suppressions, the
    deliveries' states, the runs' counts and the guard (C17-C19, C37). A few reads for the
    whole batch, then each verdict in order, seeing what the ones before it did (two reports
    of one delivery count once; a soft bounce counts the ones before it), then a few writes."""
    named = sorted(
        {
            v.delivery_id
            for v in verdicts
            if v.delivery_id is not None and v.decision.verdict not in _NO_CONSEQUENCE
        }
    )
    targets = await _targets(session, named)
    seen = await _verdicts_recorded(session, list(targets))
    soft_history = await _sent_history(
        session,
        {
            targets[v.delivery_id].contact_id
            for v in verdicts
            if v.decision.verdict == Verdict.SOFT and v.delivery_id in targets
        },
    )
    already = await active_reasons(
        session, {target.email for target in targets.values()}, ctx.hasher
    )
    status = {delivery_id: target.status for delivery_id, target in targets.items()}
    soft_now: set[int] = set()
    fine_now: set[int] = set()
    new_entries: list[NewEntry] = []
    new_statuses: list[dict[str, object]] = []
    tallies: dict[int, Tally] = {}
    guarded: dict[int, int] = {}  # run -> the last outcome the guard may pause it for
    outcomes: list[Outcome] = []
    for v in verdicts:
        verdict, rule = v.decision.verdict, v.decision.rule
        if v.delivery_id is None or verdict in _NO_CONSEQUENCE:
            outcomes.append(Outcome(v.report_id, verdict, rule, v.delivery_id))
            continue
        target = targets.get(v.delivery_id)
        if target is None:  # erased, or past its retention
            gone = "the delivery it names is gone"
            outcomes.append(Outcome(v.report_id, Verdict.REVIEW, gone, v.delivery_id))
            continue
        if verdict == Verdict.SOFT:
            soft_now.add(target.id)
        elif verdict in (Verdict.DELIVERED, Verdict.COMPLAINT):
            fine_now.add(target.id)
        reason = _SUPPRESSES.get(verdict)
        if verdict == Verdict.SOFT:
            in_a_row = _in_a_row(soft_history.get(target.contact_id, []), soft_now, fine_now)
            if in_a_row >= ctx.config.marketing.soft_bounce_limit:
                reason = "soft_bounce_limit"
        reasons = already.setdefault(target.email, set())
        if reason in reasons:
            reason = None  # one entry per reason is enough
        if reason is not None:
            reasons.add(reason)
            new_entries.append(
                NewEntry(
                    target.email,
                    reason=reason,
                    channel=channel if verdict != Verdict.COMPLAINT else "complaint",
                    note=rule[:200],
                    campaign_id=target.campaign_id,
                )
            )
        new_status = _NEW_STATUS.get(verdict)
        counted = status[target.id] == DeliveryStatus.SENT
        if new_status is not None and counted:
            status[target.id] = new_status
            new_statuses.append(
                {"b_id": target.id, "b_status": new_status, "b_error": f"reported: {rule}"[:300]}
            )
        first_of_its_kind = (target.id, verdict) not in seen
        seen.add((target.id, verdict))
        if target.run and first_of_its_kind:
            tally = tallies.setdefault(target.run, Tally())
            if verdict in (Verdict.SOFT, Verdict.COMPLAINT) or counted:
                tally.add_verdict(domain_of(target.email), verdict)
            if verdict in _GUARDED:
                guarded[target.run] = len(outcomes)
        outcomes.append(Outcome(v.report_id, verdict, rule, v.delivery_id, reason))

    await suppress_all(session, new_entries, clock=ctx.clock, hasher=ctx.hasher)
    if new_statuses:
        await session.execute(
            sa.update(DELIVERY)
            .where(DELIVERY.c.id == sa.bindparam("b_id"))
            .values(status=sa.bindparam("b_status"), last_error=sa.bindparam("b_error")),
            new_statuses,
        )
    for run_id in sorted(tallies):
        await add_counts(session, run_id, tallies[run_id])
    for run_id, index in sorted(guarded.items()):
        paused = await guard(session, run_id, ctx)
        if paused is not None:
            outcomes[index] = dataclasses.replace(outcomes[index], paused=paused)
    return outcomes


async def _targets(session: AsyncSession, delivery_ids: Sequence[int]) -> dict[int, Any]:
    """The deliveries reports name, with their addresses, locked: two batches deciding
    reports of one delivery at once (two processes) take turns, and the second sees the
    first's verdict, so neither counts it twice. Locked in id order, against deadlocks."""
    if not delivery_ids:
        return {}
    rows = await session.execute(
        sa.select(
            DELIVERY.c.id,
            DELIVERY.c.run,
            DELIVERY.c.status,
            DELIVERY.c.campaign_id,
            DELIVERY.c.contact_id,
            CONTACT.c.email,
        )
        .join(CONTACT, CONTACT.c.id == DELIVERY.c.contact_id)
        .where(among(DELIVERY.c.id, delivery_ids, session))
        .order_by(DELIVERY.c.id)
        .with_for_update(of=DELIVERY)
    )
    return {row.id: row for row in rows.all()}


async def _verdicts_recorded(
    session: AsyncSession, delivery_ids: Sequence[int]
) -> set[tuple[int, str]]:
    """(delivery, verdict) of the reports decided before: a second report of a kind counts
    nothing. Reports being decided now have no verdict yet, so they are not among them."""
    if not delivery_ids:
        return set()
    rows = await session.execute(
        sa.select(MESSAGE.c.delivery_id, MESSAGE.c.verdict)
        .where(among(MESSAGE.c.delivery_id, delivery_ids, session), MESSAGE.c.verdict.is_not(None))
        .distinct()
    )
    return {(delivery_id, verdict) for delivery_id, verdict in rows.all()}


# One contact's sent messages, newest first: (delivery, soft-bounced, delivered or complained).
History = list[tuple[int, bool, bool]]


async def _sent_history(session: AsyncSession, contact_ids: Collection[str]) -> dict[str, History]:
    """What the reports said of each contact's sent messages, for soft bounces in a row."""
    if not contact_ids:
        return {}
    soft = sa.exists().where(
        MESSAGE.c.delivery_id == DELIVERY.c.id,
        MESSAGE.c.verdict == Verdict.SOFT,
    )
    fine = sa.exists().where(
        MESSAGE.c.delivery_id == DELIVERY.c.id,
        MESSAGE.c.verdict.in_((Verdict.DELIVERED, Verdict.COMPLAINT)),
    )
    rows = await session.execute(
        sa.select(DELIVERY.c.contact_id, DELIVERY.c.id, soft.label("soft"), fine.label("fine"))
        .where(
            among(DELIVERY.c.contact_id, sorted(contact_ids), session),
            DELIVERY.c.sent_at.is_not(None),
        )
        .order_by(DELIVERY.c.contact_id, DELIVERY.c.sent_at.desc(), DELIVERY.c.id.desc())
    )
    history: dict[str, History] = {}
    for contact_id, delivery_id, was_soft, was_fine in rows.all():
        history.setdefault(contact_id, []).append((delivery_id, bool(was_soft), bool(was_fine)))
    return history


def _in_a_row(history: History, soft_now: set[int], fine_now: set[int]) -> int:
    """How many of a contact's messages soft-bounced in a row, with no delivery between them
    (C18): counted back from the newest one that soft-bounced. Messages sent after it are not
    "between": their own reports may still come. `soft_now` and `fine_now` are what reports
    decided in this batch said."""
    count = 0
    for delivery_id, was_soft, was_fine in history:
        bounced = (was_soft or delivery_id in soft_now) and not (
            was_fine or delivery_id in fine_now
        )
        if bounced:
            count += 1
        elif count:
            break
    return count


def _recorded(
    outcome: Outcome,
    *,
    form: str | None,
    status_code: str | None,
    diagnostic: str | None,
    feedback_type: str | None,
    reported_recipient: str | None,
) -> dict[str, object]:
    """What is kept of a decided report, each field as its column takes it."""
    return {
        "b_id": outcome.report_id,
        "verdict": outcome.verdict,
        "rule": outcome.rule[:100],
        "delivery_id": outcome.delivery_id,
        "state": State.REVIEW if outcome.verdict == Verdict.REVIEW else State.DECIDED,
        "form": form,
        "status_code": status_code,
        "diagnostic": mask_addresses((diagnostic or "")[:READ_AT_MOST])[:300] or None,
        "feedback_type": _field(feedback_type, 32),
        "reported_recipient": _field(reported_recipient, 320),
    }


async def _record(session: AsyncSession, rows: Sequence[dict[str, object]]) -> None:
    if not rows:
        return
    # Bound as b_<column>: SQLAlchemy keeps a column's own name for its SET clause.
    columns = [name for name in rows[0] if name != "b_id"]
    await session.execute(
        sa.update(MESSAGE)
        .where(MESSAGE.c.id == sa.bindparam("b_id"))
        .values({name: sa.bindparam(f"b_{name}") for name in columns}),
        [{"b_id": row["b_id"], **{f"b_{name}": row[name] for name in columns}} for row in rows],
    )


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
    [outcome] = await _apply(
        session, [Verdicted(report_id, decision, delivery_id)], ctx=ctx, channel="relay"
    )
    recorded = _recorded(
        outcome,
        form="relay",
        status_code=event.status,
        diagnostic=event.diagnostic,
        feedback_type="abuse" if event.type == "complaint" else None,
        reported_recipient=None,
    )
    await _record(session, [recorded])
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
