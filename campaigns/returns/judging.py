"""A stored report read and judged: the reading (reading.py) and what the decision table makes
of it (table.py), with no database, so that it runs anywhere: before a report's transaction,
and during a burst in the listener's reader process (mailer/reader.py)."""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.returns.reading import Reading, read_report
from campaigns.returns.table import Decision, Verdict, decide


@dataclass(frozen=True)
class Stored:
    """A report as stored, to be read (outside any transaction) and decided."""

    id: int
    recipient: str
    raw: bytes
    null_sender: bool


@dataclass(frozen=True)
class Judged:
    """A stored report, read and judged by the table: ready to be applied."""

    report: Stored
    reading: Reading
    decision: Decision


def read_stored(report: Stored) -> Judged:
    """Read and judge a report: pure, CPU only, so the caller does it before the report's
    transaction: a long report holds no lock while it is read."""
    reading = read_report(report.raw)
    return Judged(report, reading, verdict_of(reading, null_sender=report.null_sender))


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
