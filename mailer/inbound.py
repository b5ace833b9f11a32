"""The inbound SMTP listener (aiosmtpd), run inside `serve`.

- `unsubscribe+<token>@<mail_domain>` unsubscribes like a one-click, before the 250 (C14).
- `bounces+<token>@<mail_domain>` (the VERP envelope sender) and plain `bounces@` (where
  feedback loops send complaints) take reports: each is stored raw and committed, answered
  250, and decided right after by a processor task (campaigns/returns/intake.py). Reports
  still pending after a crash are decided when the listener starts again (C20).
- Anything else for our domain is kept for review, never acted on by guessing (C20).

Every message is answered 250, whatever it looks like: a refusal makes the remote MTA bounce
the bounce. Lines of any length and 8-bit bytes are accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from functools import partial
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from campaigns.context import Context
from campaigns.returns.intake import (
    REPORT_CAP,
    STORE,
    Arrival,
    Outcome,
    State,
    decide_reports,
    pending_reports,
    report_rows,
    set_aside,
    stored_reports,
)
from campaigns.returns.judging import Stored
from campaigns.tokens import Kind, TokenSigner
from mailer.db import Database
from mailer.delivery.objections import Objections
from mailer.reader import Reader

log = logging.getLogger("mailer.inbound")
MAX_MESSAGE = 32 * 1024 * 1024  # advertised as SIZE; what is kept of a report is capped lower
REPORTS = "bounces"  # the local part reports come to, with or without a token
RETRIES, RETRY_SECONDS = 5, 2.0  # a report the database could not take for a while
KEEP_IN_MEMORY = 500  # reports waiting to be decided whose bytes stay in memory (a few MiB)
STORE_AT_ONCE = 200  # reports stored in one transaction, at most
DECIDE_AT_ONCE = 500  # reports decided in one transaction, at most
GATHER_SECONDS = 0.2  # how long a report may wait for others to be decided with (C13: < 1 s)


class InboundHandler:
    def __init__(
        self,
        db: Database,
        ctx: Context,
        signer: TokenSigner,
        objections: Objections,  # takes a mailto unsubscribe, and follows it up
    ) -> None:
        self.db = db
        self.ctx = ctx
        self.signer = signer
        self.domain = ctx.config.sender.mail_domain.lower()
        self.objections = objections
        self._following_up: set[asyncio.Task[None]] = set()  # kept until done
        # Reports that came and wait for their store's commit (and then their 250).
        self._arriving: list[tuple[Arrival, asyncio.Future[None]]] = []
        self._storing: asyncio.Task[None] | None = None
        # Reports to decide: the id, and the report itself when this process just stored it
        # (read again from the database only after a restart, a retry or in a backlog).
        self._stored: asyncio.Queue[tuple[int, Stored | None]] = asyncio.Queue()
        self._tries: Counter[int] = Counter()  # per report, transient database errors
        self._processor: asyncio.Task[None] | None = None
        self._reader = Reader()

    async def start(self) -> None:
        """Decide what an earlier process stored and did not decide, then what comes."""
        for report_id in await self.db.transaction(pending_reports):
            self._stored.put_nowait((report_id, None))
        self._processor = asyncio.create_task(self._decide_stored(), name="inbound-reports")

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Decide what was stored (for a while), then stop; what is still pending stays
        stored for the next start."""
        if self._processor is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stored.join(), grace_seconds)
            self._processor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._processor
            self._processor = None
        await self._reader.close()

    async def idle(self) -> None:
        """Wait until every stored report is decided (tests and the benchmark)."""
        await self._stored.join()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        local, _, domain = address.rpartition("@")
        if domain.lower() != self.domain or not local:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if not isinstance(content, bytes):
            content = bytes(content)
        null_sender = not envelope.mail_from or envelope.mail_from == "<>"
        try:
            for recipient in envelope.rcpt_tos:
                await self._take(recipient, content, null_sender)
        except Exception as exc:
            # The database cannot keep it: a temporary failure, so the remote MTA tries again.
            log.error("inbound mail not stored: %s", type(exc).__name__)
            return "451 4.3.0 temporary failure, try again later"
        return "250 OK: received"

    async def _take(self, recipient: str, content: bytes, null_sender: bool) -> None:
        """Act on an unsubscribe at once; store anything else."""
        local = recipient.rpartition("@")[0].lower()
        tag, _, token = local.partition("+")
        if tag == "unsubscribe":
            delivery_id = self.signer.read_delivery(Kind.UNSUBSCRIBE, token)
            if delivery_id is not None:
                taken = await self.objections.take(delivery_id, channel="mailto")
                if taken is not None and taken.new:  # the rest after the 250, as one-click's
                    task = asyncio.create_task(self.objections.after_answer())
                    self._following_up.add(task)
                    task.add_done_callback(self._following_up.discard)
                return
            await self._keep_for_review(recipient, content, "unknown unsubscribe token")
            return
        if tag == REPORTS:
            await self._store(Arrival(recipient, content, null_sender))
            return
        await self._keep_for_review(recipient, content, "unknown mailbox")

    async def _keep_for_review(self, recipient: str, content: bytes, why: str) -> None:
        arrival = Arrival(recipient, content)
        await self.db.statement(
            STORE, report_rows([arrival], ctx=self.ctx, state=State.REVIEW, rule=why)
        )
        log.info("inbound mail kept for review: %s", why)

    async def _store(self, arrival: Arrival) -> None:
        """Store a report and return once it is committed (then the 250 may go). The reports
        that come while one store commits go together in the next (a group commit): one
        transaction for all that wait, not one each."""
        done = asyncio.get_running_loop().create_future()
        self._arriving.append((arrival, done))
        if self._storing is None or self._storing.done():
            self._storing = asyncio.create_task(self._store_arriving(), name="inbound-store")
        await done

    async def _store_arriving(self) -> None:
        while self._arriving:
            await asyncio.sleep(0)  # the sessions ready to store now come in this one too
            batch = self._arriving[:STORE_AT_ONCE]
            del self._arriving[:STORE_AT_ONCE]
            arrivals = [arrival for arrival, _ in batch]
            try:
                rows = report_rows(arrivals, ctx=self.ctx)
                ids = [row.id for row in await self.db.statement(STORE, rows, urgent=True)]
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for report_id, arrival in zip(ids, arrivals, strict=True):
                # Decided after the answer, whether or not the sender still waits for it:
                # stored is what counts. Kept in memory only while few wait: a backlog is
                # read back from the database, so memory stays flat however many come.
                keep = self._stored.qsize() < KEEP_IN_MEMORY
                report = Stored(
                    report_id, arrival.recipient, arrival.raw[:REPORT_CAP], arrival.null_sender
                )
                self._stored.put_nowait((report_id, report if keep else None))
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def _decide_stored(self) -> None:
        while True:
            batch = [await self._stored.get()]
            # Gather for a moment: a transaction costs about as much for one report as for
            # fifty, and in a burst the CPU it saves is the listener's speed.
            gathering = asyncio.get_running_loop().time() + GATHER_SECONDS
            while len(batch) < DECIDE_AT_ONCE:
                if self._stored.empty():
                    left = gathering - asyncio.get_running_loop().time()
                    if left <= 0:
                        break
                    with contextlib.suppress(TimeoutError):
                        batch.append(await asyncio.wait_for(self._stored.get(), left))
                    continue
                batch.append(self._stored.get_nowait())
            try:
                await self._decide_batch(batch)
            except asyncio.CancelledError:
                raise
            except (OperationalError, InterfaceError) as exc:  # the database, for a while
                for report_id, _ in batch:
                    await self._again_later(report_id, exc)
            except Exception as exc:
                # One report the database refuses or the code cannot decide must not hold back
                # the others: each alone, and only the one that fails is set aside for review.
                if len(batch) > 1:
                    log.warning(
                        "a batch of reports not decided (%s): each alone", type(exc).__name__
                    )
                for item in batch:
                    await self._decide_alone(item)
            finally:
                for _ in batch:
                    self._stored.task_done()

    async def _decide_alone(self, item: tuple[int, Stored | None]) -> None:
        report_id = item[0]
        try:
            await self._decide_batch([item])
        except asyncio.CancelledError:
            raise
        except DBAPIError as exc:
            await self._again_later(report_id, exc)
        except Exception as exc:
            log.error("report %s not decided: %s", report_id, type(exc).__name__)
            await self._set_aside(report_id, exc)

    async def _again_later(self, report_id: int, exc: DBAPIError) -> None:
        """The database, for a while: that report again in a moment, a few times."""
        if self._tries[report_id] >= RETRIES:
            await self._set_aside(report_id, exc)
            return
        self._tries[report_id] += 1
        log.warning("report %s not decided yet: %s", report_id, type(exc).__name__)
        asyncio.get_running_loop().call_later(
            RETRY_SECONDS, self._stored.put_nowait, (report_id, None)
        )

    async def _decide_batch(self, batch: list[tuple[int, Stored | None]]) -> None:
        missing = [report_id for report_id, report in batch if report is None]
        loaded: dict[int, Stored] = {}
        if missing:
            found = await self.db.transaction(partial(stored_reports, report_ids=missing))
            loaded = {report.id: report for report in found}
        # Those not found were decided by another process.
        in_hand = (report or loaded.get(report_id) for report_id, report in batch)
        reports = [report for report in in_hand if report is not None]
        if not reports:
            return
        judged = await self._reader.read(reports)  # outside any transaction: holds no lock
        outcomes = await self.db.transaction(
            partial(decide_reports, judged=judged, ctx=self.ctx, signer=self.signer),
            urgent=True,
        )
        for report in reports:
            self._tries.pop(report.id, None)
        _log_outcomes(outcomes)

    async def _set_aside(self, report_id: int, exc: Exception) -> None:
        self._tries.pop(report_id, None)
        with contextlib.suppress(Exception):  # else it stays pending, for the next start
            await self.db.transaction(
                partial(set_aside, report_id=report_id, why=f"not decided: {type(exc).__name__}")
            )


def _log_outcomes(outcomes: list[Outcome]) -> None:
    """One line per batch (a burst of a feedback loop is thousands of reports), each report
    at DEBUG, a pause on its own: ids, verdicts and rules, never an address or a token."""
    if not outcomes:
        return
    for outcome in outcomes:
        log.debug("report %s: %s (%s)", outcome.report_id, outcome.verdict, outcome.rule)
        if outcome.paused:
            log.warning(
                "report %s: %s; campaign %s", outcome.report_id, outcome.verdict, outcome.paused
            )
    verdicts = Counter(str(outcome.verdict) for outcome in outcomes)
    log.info(
        "reports decided: %d (%s)",
        len(outcomes),
        ", ".join(f"{verdict} {n}" for verdict, n in verdicts.most_common()),
    )


class ReportServer(SMTP):
    """aiosmtpd with no line limit worth the name: RFC 5321 allows 1,000 characters, real
    reports (Amazon SES, GMX) send longer lines, and a 500 would bounce the bounce."""

    line_length_limit = 1024 * 1024

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd 1.4's own, less the typing Protocol class it defines on every call: for
        MAIL FROM and RCPT TO of each report, a sixth of the listener's time in a burst."""
        if not arg:
            return "", ""
        parse = get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec
        try:
            address, rest = parse(arg)
        except HeaderParseError:
            return None, None
        addr: str = address.addr_spec
        local_part = addr.rpartition("@")[0]
        if self.local_part_limit and len(local_part) > self.local_part_limit:
            return None, None
        return addr, rest


class Listener:
    """The SMTP server and the task that decides what it stored."""

    def __init__(self, server: asyncio.Server, handler: InboundHandler) -> None:
        self.server = server
        self.handler = handler

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()
        await self.handler.stop()


async def start_listener(handler: InboundHandler, host: str, port: int) -> Listener:
    """Listen on MAILER_INBOUND_HOST:PORT in the running loop. SO_REUSEPORT lets several
    `serve` workers share the port."""
    # aiosmtpd logs every command at INFO: RCPT TO carries tokens and MAIL FROM an address.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    await handler.start()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: ReportServer(
            handler,
            hostname=handler.ctx.config.sender.mail_domain,
            data_size_limit=MAX_MESSAGE,
            enable_SMTPUTF8=True,
        ),
        host=host,
        port=port,
        reuse_port=True,
    )
    return Listener(server, handler)
