"""The report reader: reads the reports the listener stored, in this process while few come
and in a small helper process during a burst.

Parsing a report (the email package, the decision table) is a third of what a report costs the
listener, all of it Python holding the GIL. In a burst (a feedback loop's, after a campaign) the
helper does it on another CPU and leaves the listener's own to the SMTP sessions and the
database: with two CPUs, the burst is decided about a fifth faster. The helper is
`python -m mailer.reader`: it imports only the reading code (about 25 MiB), reads batches of
reports on its stdin and answers their readings on its stdout, and is started when a burst
first needs it. If it dies, the batch is read here and the next burst starts a new one. Never a
thread: a reading thread holding the GIL makes every socket write of the loop wait for it, and
the listener slows to a third.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import struct
import sys
from collections.abc import Sequence

from campaigns.returns.judging import Judged, Stored, read_stored
from campaigns.returns.reading import Reading
from campaigns.returns.table import Decision, Verdict

log = logging.getLogger("mailer.inbound")
READ_APART_FROM = 50  # reports in a batch from which the helper reads them
READ_SECONDS = 60.0  # a batch the helper has not answered by then: read here, a new helper
_LENGTH = struct.Struct(">I")


class Reader:
    def __init__(self, apart_from: int = READ_APART_FROM) -> None:
        self.apart_from = apart_from
        self._helper: asyncio.subprocess.Process | None = None

    async def read(self, reports: Sequence[Stored]) -> list[Judged]:
        if len(reports) >= self.apart_from:
            try:
                readings = await asyncio.wait_for(self._read_apart(reports), READ_SECONDS)
            except asyncio.CancelledError:
                self._abandon()  # its answer to this batch must not be read as the next's
                raise
            except (OSError, EOFError, TimeoutError, pickle.UnpicklingError) as exc:
                log.warning(
                    "the report reader process failed (%s); reading in this one", type(exc).__name__
                )
                self._abandon()
            else:
                return [Judged(r, *reading) for r, reading in zip(reports, readings, strict=True)]
        judged = []
        for report in reports:
            judged.append(read_stored(report))
            await asyncio.sleep(0)  # the SMTP sessions go on between two reports
        return judged

    @property
    def helper_pid(self) -> int | None:
        return self._helper.pid if self._helper is not None else None

    async def _read_apart(self, reports: Sequence[Stored]) -> list[tuple[Reading, Decision]]:
        helper = await self._started()
        assert helper.stdin is not None and helper.stdout is not None
        # Only what reading needs goes over: the bytes and whether the null sender sent them.
        batch = pickle.dumps([(r.raw, r.null_sender) for r in reports], pickle.HIGHEST_PROTOCOL)
        helper.stdin.write(_LENGTH.pack(len(batch)) + batch)
        await helper.stdin.drain()
        (size,) = _LENGTH.unpack(await helper.stdout.readexactly(_LENGTH.size))
        # Pickle between this process and its own child, over a pipe only they hold.
        answer = await helper.stdout.readexactly(size)
        readings: list[tuple[Reading, Decision]] = pickle.loads(answer)  # noqa: S301
        if len(readings) != len(reports):
            raise EOFError("the reader answered another batch")
        return readings

    async def _started(self) -> asyncio.subprocess.Process:
        if self._helper is None or self._helper.returncode is not None:
            self._helper = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "mailer.reader",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        return self._helper

    def _abandon(self) -> None:
        helper, self._helper = self._helper, None
        if helper is not None and helper.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                helper.kill()

    async def close(self) -> None:
        helper, self._helper = self._helper, None
        if helper is None or helper.returncode is not None:
            return
        if helper.stdin is not None:
            helper.stdin.close()  # end of input: it exits
        try:
            await asyncio.wait_for(helper.wait(), 2)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                helper.kill()
            await helper.wait()


def _serve() -> None:
    """The helper's loop: a batch in, its readings out, until its input ends."""
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while header := source.read(_LENGTH.size):
        (size,) = _LENGTH.unpack(header)
        batch: list[tuple[bytes, bool]] = pickle.loads(source.read(size))  # noqa: S301 (ours)
        readings = [_read_one(raw, null_sender) for raw, null_sender in batch]
        answer = pickle.dumps(readings, pickle.HIGHEST_PROTOCOL)
        sink.write(_LENGTH.pack(len(answer)) + answer)
        sink.flush()


def _read_one(raw: bytes, null_sender: bool) -> tuple[Reading, Decision]:
    """As `read_stored`; a report that makes the reading fail is one a person reads (what it
    failed on is not printed: it may quote the report)."""
    try:
        judged = read_stored(Stored(0, "", raw, null_sender))
    except Exception:
        return Reading("unreadable"), Decision(Verdict.REVIEW, "cannot be read")
    return judged.reading, judged.decision


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)  # flufl.bounce's detectors log what trips them
    _serve()
