"""The report reader's helper process (mailer/reader.py): a burst is read in another process,
with the same result as reading here; a helper that dies costs nothing but its speed."""

from __future__ import annotations

import os
import signal

from campaigns.returns.judging import Stored, read_stored
from campaigns.returns.table import Verdict
from mailer.reader import Reader
from tests import reports


def _burst() -> list[Stored]:
    raws = [
        (reports.dsn(status="5.1.1", diagnostic="550 5.1.1 user unknown"), True),
        (reports.dsn(status="4.2.2", diagnostic="452 4.2.2 mailbox full"), True),
        (reports.arf(feedback_type="abuse"), False),
        (reports.auto_reply(), False),
        (reports.qmail("<p0@example.be>:\nSorry, no mailbox here by that name. (#5.1.1)"), True),
    ]
    return [Stored(i, "bounces@example.be", raw, null) for i, (raw, null) in enumerate(raws)]


async def test_a_burst_is_read_in_the_helper_as_it_is_read_here():
    reader = Reader(apart_from=2)
    burst = _burst()
    try:
        apart = await reader.read(burst)
        assert reader.helper_pid is not None  # read by the helper
        assert apart == [read_stored(report) for report in burst]
        assert [j.decision.verdict for j in apart] == [
            Verdict.HARD,
            Verdict.SOFT,
            Verdict.COMPLAINT,
            Verdict.AUTO_REPLY,
            Verdict.HARD,
        ]
        assert await reader.read(burst[:1]) == [read_stored(burst[0])]  # few: read here
    finally:
        await reader.close()
    assert reader.helper_pid is None


async def test_a_helper_that_died_costs_a_batch_read_here_and_is_started_again():
    reader = Reader(apart_from=2)
    burst = _burst()
    try:
        await reader.read(burst)
        first = reader.helper_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert await reader.read(burst) == [read_stored(report) for report in burst]
        assert await reader.read(burst) == [read_stored(report) for report in burst]
        assert reader.helper_pid not in (None, first)  # a new one for the next burst
    finally:
        await reader.close()


async def test_a_helper_that_does_not_answer_in_time_is_replaced(monkeypatch):
    from mailer import reader as module

    monkeypatch.setattr(module, "READ_SECONDS", 0.0)  # no answer is in time
    reader = Reader(apart_from=2)
    burst = _burst()
    try:
        assert await reader.read(burst) == [read_stored(report) for report in burst]
        assert reader.helper_pid is None  # killed, not waited for: a new one next time
    finally:
        await reader.close()
