"""The send ledger: what happens to each delivery of a run, in SQL (invariants 1, 3, 6).

    queued --claim--> sending --handoff--> sent | failed | bounced | queued (retry later)
       \\--> skipped (suppressed or capped at claim time)       sending --crash--> unknown

A claim is committed before any SMTP traffic. While a claimed row waits to be handed over (a
dispatcher composes the next batch while it sends one), its `next_attempt_at` holds when the
claim lapses; a committed mark clears it just before the handoff. So after a crash a row still
carrying it was never handed to SMTP and is queued again, and a row without it may have been
sent: it becomes `unknown`, never sent again. The handoff transaction re-checks suppression, locks
the rows, and stays open while the messages are handed to SMTP; an objection, which marks the
address's open deliveries `skipped`, therefore either commits before the handoff (and the
message is not sent) or waits for it (and nothing is handed over after its commit, C13).

A crash loses the handoff transaction's outcomes. So that it leaves `unknown` only what was on
the wire, not the whole batch, the sender keeps a wire journal outside that transaction
(mailer/delivery/journal.py): per handed-over batch (`handoff`), which messages were released
to the wire and what the relay answered. Recovery reads it (`Journaled`): a message never
released is queued again, an answered one gets its answer, and only a released one without an
answer is `unknown`. Without a journal row, every handed-over row is `unknown`, as before.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.audience.audience import load_target
from campaigns.audience.eligibility import ELIGIBLE, AudienceRules, audience_query
from campaigns.context import Context
from campaigns.db import among, dialect_name
from campaigns.models import Campaign, CampaignRun, Contact, Delivery
from campaigns.returns.reputation import add_counts, smtp_tally
from campaigns.sending.states import CampaignStatus, DeliveryStatus
from campaigns.suppression.entries import NewEntry, suppress_all
from campaigns.suppression.predicate import is_suppressed

DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
CONTACT = Contact.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Claim:
    ids: list[int]  # now `sending`
    looked_at: int  # queued deliveries considered (0: nothing left to claim now)


async def claim_batch(
    session: AsyncSession, campaign_id: str, run_id: int, ctx: Context, limit: int
) -> Claim:
    """Take up to `limit` queued deliveries for sending. The gate (invariant 1) is asked
    again, with the same audience query as materialising: a contact that lost its basis
    (a withdrawal), whose address was suppressed, or that reached the frequency cap since is
    `skipped` with that reason."""
    now = ctx.clock.now()
    candidates = (
        sa.select(DELIVERY.c.id, DELIVERY.c.contact_id)
        .where(
            DELIVERY.c.campaign_id == campaign_id,
            DELIVERY.c.run == run_id,
            DELIVERY.c.status == DeliveryStatus.QUEUED,
            sa.or_(DELIVERY.c.next_attempt_at.is_(None), DELIVERY.c.next_attempt_at <= now),
        )
        .order_by(DELIVERY.c.id)
        .limit(limit)
    )
    if dialect_name(session) == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)  # workers share a campaign
    rows = (await session.execute(candidates)).all()
    if not rows:
        return Claim([], 0)
    # The list itself first: the profile's flag, which the audience query reads, lags an
    # objection whose follow-up is still due (campaigns/objections.py).
    suppressed = await _skip_suppressed(session, [row.id for row in rows], (DeliveryStatus.QUEUED,))
    contact_of = {
        delivery_id: contact_id for delivery_id, contact_id in rows if delivery_id not in suppressed
    }
    if not contact_of:
        return Claim([], len(rows))
    _, target = await load_target(session, campaign_id)
    rules = AudienceRules.for_campaign(target, ctx.config, now)
    batch_contacts = sa.select(DELIVERY.c.contact_id).where(
        among(DELIVERY.c.id, contact_of, session)
    )
    verdict: dict[str, str] = dict(
        (
            await session.execute(
                sa.select(sa.literal_column("contact_id"), sa.literal_column("reason")).select_from(
                    audience_query(rules, batch_contacts).subquery()
                )
            )
        ).all()
    )
    refused: dict[str, list[int]] = {}
    for delivery_id, contact_id in contact_of.items():
        reason = verdict.get(contact_id, "no_basis")
        if reason != ELIGIBLE:
            refused.setdefault(reason, []).append(delivery_id)
    for reason, ids in refused.items():
        await session.execute(
            sa.update(DELIVERY)
            .where(among(DELIVERY.c.id, ids, session))
            .values(status=DeliveryStatus.SKIPPED, skip_reason=reason)
        )
    eligible = [i for i in contact_of if verdict.get(contact_of[i]) == ELIGIBLE]
    claimed = await session.execute(
        sa.update(DELIVERY)
        .where(among(DELIVERY.c.id, eligible, session), DELIVERY.c.status == DeliveryStatus.QUEUED)
        .values(
            status=DeliveryStatus.SENDING,
            claimed_at=now,
            attempts=DELIVERY.c.attempts + 1,
            next_attempt_at=now + timedelta(seconds=ctx.config.delivery.lease_seconds),
        )
        .returning(DELIVERY.c.id)
    )
    return Claim(sorted(claimed.scalars()), len(rows))


async def mark_handing_over(
    session: AsyncSession,
    campaign_id: str,
    ids: Sequence[int],
    ctx: Context,
    handed_by: str | None = None,
    handoff: int | None = None,
) -> list[int] | None:
    """Its own transaction, just before the handoff: from here on a crash makes these rows
    `unknown`, unless the wire journal's row `handoff` says better; `handed_by` names the
    sending process. Returns the ids still claimed (a claim that lapsed meanwhile is not
    sent), or None when the campaign was paused or cancelled since the claim: the batch is
    released."""
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None or campaign.status != CampaignStatus.SENDING:
        if campaign is not None and campaign.status == CampaignStatus.CANCELLED:
            await session.execute(
                sa.update(DELIVERY)
                .where(
                    among(DELIVERY.c.id, ids, session), DELIVERY.c.status == DeliveryStatus.SENDING
                )
                .values(status=DeliveryStatus.SKIPPED, skip_reason="cancelled")
            )
        await release(session, ids)
        return None
    marked = await session.execute(
        sa.update(DELIVERY)
        .where(
            among(DELIVERY.c.id, ids, session),
            DELIVERY.c.status == DeliveryStatus.SENDING,
            DELIVERY.c.next_attempt_at.is_not(None),
        )
        .values(
            next_attempt_at=None, claimed_at=ctx.clock.now(), handed_by=handed_by, handoff=handoff
        )
        .returning(DELIVERY.c.id)
    )
    return sorted(marked.scalars())


async def release(session: AsyncSession, ids: Sequence[int]) -> None:
    """Give claimed deliveries back (nothing was handed to SMTP): they are queued again."""
    await session.execute(
        sa.update(DELIVERY)
        .where(among(DELIVERY.c.id, ids, session), DELIVERY.c.status == DeliveryStatus.SENDING)
        .values(
            status=DeliveryStatus.QUEUED,
            attempts=DELIVERY.c.attempts - 1,
            next_attempt_at=None,
            handoff=None,
        )
    )


async def begin_handoff(session: AsyncSession, ids: Sequence[int], handoff: int) -> list[int]:
    """First statement of the handoff transaction: drop deliveries whose address was
    suppressed since the claim, and lock the rest until the transaction ends. Only rows still
    marked for this batch (`handoff`): a batch that outlived its lease may have been recovered
    meanwhile, and what recovery queued again may be another sender's now."""
    await _skip_suppressed(session, ids, (DeliveryStatus.SENDING,))
    # Locks without writing (a no-op UPDATE made a new version of every row), in id order as
    # an objection takes them. SQLite has no row locks: the UPDATE above holds its write lock,
    # even when it changes no row, until the transaction ends.
    locked = await session.execute(
        sa.select(DELIVERY.c.id)
        .where(
            among(DELIVERY.c.id, ids, session),
            DELIVERY.c.status == DeliveryStatus.SENDING,
            DELIVERY.c.handoff == handoff,
        )
        .order_by(DELIVERY.c.id)
        .with_for_update(key_share=True)  # FOR NO KEY UPDATE: what an UPDATE takes
    )
    return list(locked.scalars())


async def _skip_suppressed(
    session: AsyncSession, ids: Sequence[int], states: tuple[str, ...]
) -> set[int]:
    """The suppression list itself, not the profile's flag: the last word before SMTP (C13).
    Returns the ids skipped."""
    skipped = await session.execute(
        sa.update(DELIVERY)
        .where(
            among(DELIVERY.c.id, ids, session),
            DELIVERY.c.status.in_(states),
            is_suppressed(DELIVERY.c.contact_id),
        )
        .values(status=DeliveryStatus.SKIPPED, skip_reason="suppressed")
        .returning(DELIVERY.c.id)
    )
    return set(skipped.scalars())


@dataclass(frozen=True)
class SmtpOutcome:
    """What SMTP said about one message, normalised: sent, temporary (tried again), permanent,
    or unknown: the whole message was written and the connection was lost before the reply,
    so the relay may have taken it (RFC 1047). Never sent again (invariant 6)."""

    delivery_id: int
    kind: Literal["sent", "temporary", "permanent", "unknown"]
    detail: str = ""
    hard_bounce: bool = False  # about the address: the decision table's "hard" (C17)
    block: bool = False  # about the sender or the message: counted against the run (C17, C37)
    relay_failure: bool = False  # the relay itself failed (counts against the error budget)


async def record_outcomes(
    session: AsyncSession, outcomes: Sequence[SmtpOutcome], ctx: Context
) -> None:
    """Write what happened and schedule retries with backoff until the deadline. Part of the
    handoff transaction; hard bounces are suppressed after it (`suppress_hard_bounces`), so
    the handoff never waits on another run's rows."""
    now = ctx.clock.now()
    policy = ctx.config.delivery
    sent = [o.delivery_id for o in outcomes if o.kind == "sent"]
    if sent:
        await session.execute(
            sa.update(DELIVERY)
            .where(among(DELIVERY.c.id, sent, session))
            .values(status=DeliveryStatus.SENT, sent_at=now, last_error=None)
        )
    for outcome in outcomes:
        if outcome.kind == "sent":
            continue
        row = (
            await session.execute(
                sa.select(DELIVERY.c.attempts, DELIVERY.c.queued_at).where(
                    DELIVERY.c.id == outcome.delivery_id
                )
            )
        ).one()
        values: dict[str, Any] = {"last_error": outcome.detail[:300]}
        if outcome.kind == "unknown":
            values.update(status=DeliveryStatus.UNKNOWN)
        elif outcome.kind == "temporary":
            retry_at = now + timedelta(seconds=policy.retry_base_seconds * 2 ** (row.attempts - 1))
            deadline = row.queued_at + timedelta(hours=policy.retry_deadline_hours)
            if retry_at <= deadline:
                values.update(status=DeliveryStatus.QUEUED, next_attempt_at=retry_at)
            else:
                values.update(status=DeliveryStatus.FAILED)
        else:
            values.update(
                status=DeliveryStatus.BOUNCED if outcome.hard_bounce else DeliveryStatus.FAILED
            )
        await session.execute(
            sa.update(DELIVERY).where(DELIVERY.c.id == outcome.delivery_id).values(**values)
        )


async def suppress_hard_bounces(
    session: AsyncSession, outcomes: Sequence[SmtpOutcome], ctx: Context
) -> None:
    """C17: an address that hard-bounced is suppressed (its own transaction)."""
    ids = [o.delivery_id for o in outcomes if o.hard_bounce]
    if not ids:
        return
    details = {o.delivery_id: o.detail for o in outcomes if o.hard_bounce}
    rows = await session.execute(
        sa.select(DELIVERY.c.id, CONTACT.c.email)
        .join(CONTACT, CONTACT.c.id == DELIVERY.c.contact_id)
        .where(DELIVERY.c.id.in_(ids))
    )
    entries = [
        NewEntry(email, reason="hard_bounce", channel="smtp", note=details[delivery_id][:200])
        for delivery_id, email in rows.all()
    ]
    await suppress_all(session, entries, clock=ctx.clock, hasher=ctx.hasher)


# A position's state in the wire journal: not yet released to the wire, released (it may be on
# the wire), or the relay's answer.
NOT_RELEASED, RELEASED = ".", "w"
_ANSWERED = {
    "s": "sent",
    "t": "temporary",
    "p": "permanent",
    "h": "permanent",  # a hard bounce
    "b": "permanent",  # a block
    "u": "unknown",
}
IN_FLIGHT = "in flight when a worker stopped"


def wire_state(outcome: SmtpOutcome) -> str:
    """The journal's one character for what the relay answered."""
    if outcome.kind == "permanent":
        return "h" if outcome.hard_bounce else "b" if outcome.block else "p"
    return outcome.kind[0]  # sent, temporary, unknown


@dataclass(frozen=True)
class Journaled:
    """A handed-over batch as the wire journal last wrote it: its delivery ids in order, a
    state per position, and the relay's reply to those that were not sent."""

    ids: list[int]
    states: str
    details: dict[int, str]

    def answers(self) -> dict[int, SmtpOutcome | None]:
        """Per delivery: what the relay answered (`unknown` when it was released and no answer
        was written), or None when it was never released to the wire."""
        said: dict[int, SmtpOutcome | None] = {}
        for position, (delivery_id, state) in enumerate(zip(self.ids, self.states, strict=True)):
            if state == NOT_RELEASED:
                said[delivery_id] = None
            elif state in _ANSWERED:
                kind: Any = _ANSWERED[state]
                detail = self.details.get(position) or (IN_FLIGHT if kind == "unknown" else "")
                said[delivery_id] = SmtpOutcome(
                    delivery_id, kind, detail, hard_bounce=state == "h", block=state == "b"
                )
            else:
                said[delivery_id] = SmtpOutcome(delivery_id, "unknown", IN_FLIGHT)
        return said


class JournalReader(Protocol):
    async def read(self, keys: Collection[int]) -> dict[int, Journaled]: ...


async def recover_in_flight(
    session: AsyncSession, ctx: Context, journal: JournalReader | None = None
) -> int:
    """After a crash: deliveries claimed longer ago than the lease. Those never handed over
    are queued again. Of those handed over, the wire journal's row for their own batch
    decides: never released to the wire, queued again; answered, the answer is recorded (a
    hard bounce suppressed, C17; counted for the run, C37); otherwise `unknown`, never sent again
    (invariant 6). The rows are read (and on PostgreSQL locked, skipping those a live
    handoff holds) before the journal is; a batch that outlived its lease and goes on
    afterwards sends only rows still marked for it (`begin_handoff`). Returns how many
    became `unknown`."""
    stale = ctx.clock.now() - timedelta(seconds=ctx.config.delivery.lease_seconds)
    lapsed = (DELIVERY.c.status == DeliveryStatus.SENDING, DELIVERY.c.claimed_at < stale)
    await session.execute(
        sa.update(DELIVERY)
        .where(*lapsed, DELIVERY.c.next_attempt_at.is_not(None))
        .values(
            status=DeliveryStatus.QUEUED, attempts=DELIVERY.c.attempts - 1, next_attempt_at=None
        )
    )
    handed = sa.select(DELIVERY.c.id, DELIVERY.c.handoff).where(*lapsed)
    if dialect_name(session) == "postgresql":
        handed = handed.with_for_update(skip_locked=True)  # a live handoff holds its rows
    rows = (await session.execute(handed)).all()
    if not rows:
        return 0
    keys = {key for _, key in rows if key is not None}
    journaled = await journal.read(keys) if journal is not None and keys else {}
    answers = {key: journaled[key].answers() for key in keys & journaled.keys()}
    never_released: list[int] = []
    outcomes: list[SmtpOutcome] = []
    for delivery_id, key in rows:  # each in its own batch's row: it may be in older ones too
        batch = answers.get(key) if key is not None else None
        if batch is None or delivery_id not in batch:  # no row says: it may have gone out
            outcomes.append(SmtpOutcome(delivery_id, "unknown", IN_FLIGHT))
        elif (said := batch[delivery_id]) is None:
            never_released.append(delivery_id)
        else:
            outcomes.append(said)
    if never_released:
        await release(session, never_released)
    await record_outcomes(session, outcomes, ctx)
    if any(o.hard_bounce for o in outcomes):
        await suppress_hard_bounces(session, outcomes, ctx)
    await _count_for_runs(session, outcomes)
    return sum(1 for o in outcomes if o.kind == "unknown")


async def _count_for_runs(session: AsyncSession, outcomes: Sequence[SmtpOutcome]) -> None:
    """What a crashed handoff never committed counts for its run as the handoff would have
    counted it (C37): the messages the relay took or refused."""
    answered = {o.delivery_id: o for o in outcomes if o.kind in ("sent", "permanent")}
    if not answered:
        return
    rows = await session.execute(
        sa.select(DELIVERY.c.id, DELIVERY.c.run, CONTACT.c.email)
        .join(CONTACT, CONTACT.c.id == DELIVERY.c.contact_id)
        .where(among(DELIVERY.c.id, answered, session))
    )
    by_run: dict[int, list[tuple[str, SmtpOutcome]]] = {}
    for delivery_id, run_id, email in rows.all():
        by_run.setdefault(run_id, []).append((email, answered[delivery_id]))
    for run_id, answers in sorted(by_run.items()):
        await add_counts(session, run_id, smtp_tally(answers))


async def handoffs_in_flight(session: AsyncSession, keys: Collection[int]) -> set[int]:
    """Of these handed-over batches, those with a delivery still `sending`: their journal rows
    are still needed."""
    if not keys:
        return set()
    rows = await session.execute(
        sa.select(DELIVERY.c.handoff)
        .where(among(DELIVERY.c.handoff, list(keys), session))
        .where(DELIVERY.c.status == DeliveryStatus.SENDING)
        .distinct()
    )
    return set(rows.scalars())


async def run_counts(session: AsyncSession, run_id: int) -> dict[str, int]:
    """Deliveries of one run by status (read from the campaign, run and status index)."""
    run = CampaignRun.__table__  # type: ignore[attr-defined]
    campaign_id = sa.select(run.c.campaign_id).where(run.c.id == run_id).scalar_subquery()
    rows = await session.execute(
        sa.select(DELIVERY.c.status, sa.func.count())
        .where(DELIVERY.c.campaign_id == campaign_id, DELIVERY.c.run == run_id)
        .group_by(DELIVERY.c.status)
    )
    return {str(status): int(n) for status, n in rows.all()}


async def pending_retry_at(session: AsyncSession, campaign_id: str, run_id: int) -> datetime | None:
    return (
        await session.execute(
            sa.select(sa.func.min(DELIVERY.c.next_attempt_at)).where(
                DELIVERY.c.campaign_id == campaign_id,
                DELIVERY.c.run == run_id,
                DELIVERY.c.status == DeliveryStatus.QUEUED,
            )
        )
    ).scalar_one_or_none()
