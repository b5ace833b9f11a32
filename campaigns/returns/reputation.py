"""The reputation guard (C37): what each run met at each receiving domain, and the pause when
complaints or one domain's refusals pass the limits of `[reputation]`.

The counts are kept as they happen (the dispatcher adds what SMTP said after each handoff, and
crash recovery what the wire journal says of a handoff that died; a decided report adds what
it says), so the guard reads a few rows, not the run's deliveries.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.addresses import a_labels
from campaigns.context import Context
from campaigns.db import dialect_insert
from campaigns.models import Campaign, CampaignRun, RunDomainCount
from campaigns.returns.table import Verdict
from campaigns.sending import pauses
from campaigns.sending.lifecycle import open_run_id, pause_itself
from campaigns.sending.states import Action, may

if TYPE_CHECKING:
    from campaigns.sending.ledger import SmtpOutcome

COUNTS = RunDomainCount.__table__  # type: ignore[attr-defined]
RUN = CampaignRun.__table__  # type: ignore[attr-defined]
CAMPAIGN = Campaign.__table__  # type: ignore[attr-defined]
FIELDS = ("messages", "delivered", "hard_bounces", "soft_bounces", "blocks", "complaints")

# What a verdict on a delivered message changes: a hard bounce or a block after the relay took
# the message means it was not delivered after all.
_REPORTED: Mapping[Verdict, Mapping[str, int]] = {
    Verdict.HARD: {"hard_bounces": 1, "delivered": -1},
    Verdict.BLOCK: {"blocks": 1, "delivered": -1},
    Verdict.SOFT: {"soft_bounces": 1},
    Verdict.COMPLAINT: {"complaints": 1},
}


def domain_of(address: str) -> str:
    """The receiving domain an address counts under: in lower case, and as A-labels when it
    is not ASCII, so the contact's `bücher.be` (a report, recovery) and `xn--bcher-kva.be`
    (RCPT TO, for an ASCII local part) are one."""
    domain = address.rpartition("@")[2].lower()
    if not domain.isascii():
        with contextlib.suppress(UnicodeError):  # IDNA 2008 refuses it: counted as written
            domain = a_labels(domain)
    return domain[:253]


@dataclass
class Tally:
    """Counts to add for one run, per receiving domain."""

    by_domain: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, domain: str, **counts: int) -> None:
        self.by_domain.setdefault(domain, Counter()).update(counts)

    def add_verdict(self, domain: str, verdict: Verdict) -> None:
        change = _REPORTED.get(verdict)
        if change:
            self.add(domain, **change)


def smtp_tally(answers: Iterable[tuple[str, SmtpOutcome]]) -> Tally:
    """What SMTP said, per receiving domain: (recipient address, outcome) pairs. A temporary
    failure is tried again (counted when it ends); an `unknown` one is not counted: the relay
    may or may not have it."""
    tally = Tally()
    for address, outcome in answers:
        if outcome.kind == "sent":
            tally.add(domain_of(address), messages=1, delivered=1)
        elif outcome.kind == "permanent":
            tally.add(
                domain_of(address),
                messages=1,
                hard_bounces=int(outcome.hard_bounce),
                blocks=int(outcome.block),
            )
    return tally


async def add_counts(session: AsyncSession, run_id: int, tally: Tally) -> None:
    """Add to the run's counts, one upsert per domain. Never commits."""
    rows = [
        {"run_id": run_id, "domain": domain, **{f: counts.get(f, 0) for f in FIELDS}}
        for domain, counts in sorted(tally.by_domain.items())
        if any(counts.values())
    ]
    if not rows:
        return
    insert = dialect_insert(session, COUNTS)
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["run_id", "domain"],
            set_={f: getattr(COUNTS.c, f) + getattr(insert.excluded, f) for f in FIELDS},
        ),
        rows,
    )


@dataclass(frozen=True)
class DomainCounts:
    domain: str
    messages: int
    delivered: int
    hard_bounces: int
    soft_bounces: int
    blocks: int
    complaints: int


@dataclass(frozen=True)
class Reputation:
    """A run's counts, overall and per receiving domain (busiest first)."""

    run_id: int | None
    overall: DomainCounts
    domains: tuple[DomainCounts, ...]


async def run_reputation(session: AsyncSession, run_id: int | None) -> Reputation:
    rows = []
    if run_id is not None:
        result = await session.execute(
            sa.select(COUNTS.c.domain, *(getattr(COUNTS.c, f) for f in FIELDS))
            .where(COUNTS.c.run_id == run_id)
            .order_by(COUNTS.c.messages.desc(), COUNTS.c.domain)
        )
        rows = [DomainCounts(*row) for row in result.all()]
    total = DomainCounts("*", *(sum(getattr(r, f) for r in rows) for f in FIELDS))
    return Reputation(run_id, total, tuple(rows))


async def guard(session: AsyncSession, run_id: int, ctx: Context) -> str | None:
    """Pause the run's campaign when it passed a limit it has not passed before (C37): after
    every handoff and every decided complaint or block. Two small reads: the run's totals and
    the domains that blocked it. Returns the reason when it paused. Never commits."""
    policy = ctx.config.reputation
    run = (
        await session.execute(
            sa.select(RUN.c.campaign_id, RUN.c.guard_tripped).where(RUN.c.id == run_id)
        )
    ).one_or_none()
    if run is None or await open_run_id(session, run.campaign_id) != run_id:
        return None  # a finished run: counted, nothing left to pause
    accepted = set(filter(None, (run.guard_tripped or "").split(",")))
    reasons: dict[str, str] = {}
    delivered, complaints = (
        await session.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(COUNTS.c.delivered), 0),
                sa.func.coalesce(sa.func.sum(COUNTS.c.complaints), 0),
            ).where(COUNTS.c.run_id == run_id)
        )
    ).one()
    if delivered >= policy.min_delivered and complaints > policy.complaint_rate * delivered:
        reasons["complaints"] = pauses.complaints(complaints / delivered, policy.complaint_rate)
    blocking = await session.execute(
        sa.select(COUNTS.c.domain, COUNTS.c.messages, COUNTS.c.blocks)
        .where(
            COUNTS.c.run_id == run_id,
            COUNTS.c.blocks > 0,
            COUNTS.c.messages >= policy.min_domain_messages,
        )
        .order_by(COUNTS.c.domain)
    )
    for domain, messages, blocks in blocking.all():
        if blocks > policy.domain_block_rate * messages:
            reasons[f"blocks:{domain}"] = pauses.domain_blocks(
                domain, blocks / messages, policy.domain_block_rate
            )
    new = [(key, text) for key, text in reasons.items() if key not in accepted]
    if not new:
        return None
    status = (
        await session.execute(sa.select(CAMPAIGN.c.status).where(CAMPAIGN.c.id == run.campaign_id))
    ).scalar_one()
    if not may(status, Action.PAUSE):
        return None  # paused by someone else meanwhile: looked at again after it resumes
    # Only the limit the pause names counts as seen: a marketer who resumes accepts that one,
    # and any other still passed pauses the run again at the next look.
    key, reason = new[0]
    await session.execute(
        sa.update(RUN)
        .where(RUN.c.id == run_id)
        .values(guard_tripped=",".join(sorted(accepted | {key}))[:500])
    )
    await pause_itself(session, run.campaign_id, reason, ctx)
    return reason
