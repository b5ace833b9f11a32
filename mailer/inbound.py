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
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.exc import DBAPIError

from campaigns.context import Context
from campaigns.recipients import Addressee, unsubscribe_delivery
from campaigns.returns.intake import (
    REPORT_CAP,
    State,
    Stored,
    decide_report,
    pending_reports,
    read_stored,
    set_aside,
    store_report,
    stored_report,
)
from campaigns.tokens import Kind, TokenSigner
from mailer.db import Database

log = logging.getLogger("mailer.inbound")
MAX_MESSAGE = 32 * 1024 * 1024  # advertised as SIZE; what is kept of a report is capped lower
REPORTS = "bounces"  # the local part reports come to, with or without a token
RETRIES, RETRY_SECONDS = 5, 2.0  # a report the database could not take for a while
KEEP_IN_MEMORY = 100  # reports waiting to be decided whose bytes stay in memory


class InboundHandler:
    def __init__(
        self,
        db: Database,
        ctx: Context,
        signer: TokenSigner,
        acknowledge: Callable[[Addressee], Awaitable[None]],
    ) -> None:
        self.db = db
        self.ctx = ctx
        self.signer = signer
        self.domain = ctx.config.sender.mail_domain.lower()
        self.acknowledge = acknowledge  # sends the C15 acknowledgement
        # Reports to decide: the id, and the report itself when this process just stored it
        # (read again from the database only after a restart or a retry).
        self._stored: asyncio.Queue[tuple[int, Stored | None]] = asyncio.Queue()
        self._tries: Counter[int] = Counter()  # per report, transient database errors
        self._processor: asyncio.Task[None] | None = None

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
        stored: list[Stored] = []
        try:
            for recipient in envelope.rcpt_tos:
                report_id = await self._take(recipient, content, null_sender)
                if report_id is not None:
                    stored.append(Stored(report_id, recipient, content[:REPORT_CAP], null_sender))
        except Exception as exc:
            # The database cannot keep it: a temporary failure, so the remote MTA tries again.
            log.error("inbound mail not stored: %s", type(exc).__name__)
            return "451 4.3.0 temporary failure, try again later"
        finally:
            for report in stored:  # decided after the answer: stored is what counts
                # Kept in memory only while few wait: a backlog is read back from the database,
                # so memory stays flat however many reports arrive.
                keep = self._stored.qsize() < KEEP_IN_MEMORY
                self._stored.put_nowait((report.id, report if keep else None))
        return "250 OK: received"

    async def _take(self, recipient: str, content: bytes, null_sender: bool) -> int | None:
        """Act on an unsubscribe at once; store anything else. Returns a report to decide."""
        local = recipient.rpartition("@")[0].lower()
        tag, _, token = local.partition("+")
        if tag == "unsubscribe":
            delivery_id = self.signer.read_delivery(Kind.UNSUBSCRIBE, token)
            if delivery_id is not None:
                addressee = await self.db.transaction(
                    lambda s: unsubscribe_delivery(s, delivery_id, channel="mailto", ctx=self.ctx),
                    urgent=True,
                )
                if addressee is not None:
                    await self.acknowledge(addressee)
                return None
            await self._keep_for_review(recipient, content, "unknown unsubscribe token")
            return None
        if tag == REPORTS:
            return await self.db.transaction(
                lambda s: store_report(
                    s, recipient=recipient, raw=content, ctx=self.ctx, null_sender=null_sender
                ),
                urgent=True,
            )
        await self._keep_for_review(recipient, content, "unknown mailbox")
        return None

    async def _keep_for_review(self, recipient: str, content: bytes, why: str) -> None:
        await self.db.transaction(
            lambda s: store_report(
                s, recipient=recipient, raw=content, ctx=self.ctx, state=State.REVIEW, rule=why
            )
        )
        log.info("inbound mail kept for review: %s", why)

    async def _decide_stored(self) -> None:
        while True:
            report_id, report = await self._stored.get()
            try:
                await self._decide(report_id, report)
            except asyncio.CancelledError:
                raise
            except DBAPIError as exc:
                if self._tries[report_id] < RETRIES:  # the database, for a while: again later
                    self._tries[report_id] += 1
                    log.warning("report %s not decided yet: %s", report_id, type(exc).__name__)
                    asyncio.get_running_loop().call_later(
                        RETRY_SECONDS, self._stored.put_nowait, (report_id, None)
                    )
                else:
                    await self._set_aside(report_id, exc)
            except Exception as exc:
                log.error("report %s not decided: %s", report_id, type(exc).__name__)
                await self._set_aside(report_id, exc)
            finally:
                self._stored.task_done()

    async def _decide(self, report_id: int, report: Stored | None) -> None:
        if report is None:
            report = await self.db.transaction(partial(stored_report, report_id=report_id))
        if report is None:
            return  # decided by another process
        # Read off the event loop and outside any transaction: a long report holds nothing.
        reading, decision = await asyncio.to_thread(read_stored, report)
        outcome = await self.db.transaction(
            partial(
                decide_report,
                report=report,
                reading=reading,
                decision=decision,
                ctx=self.ctx,
                signer=self.signer,
            ),
            urgent=True,
        )
        self._tries.pop(report_id, None)
        if outcome is not None:
            log.info(
                "report %s: %s (%s)%s",
                report_id,
                outcome.verdict,
                outcome.rule,
                f"; campaign {outcome.paused}" if outcome.paused else "",
            )

    async def _set_aside(self, report_id: int, exc: Exception) -> None:
        self._tries.pop(report_id, None)
        with contextlib.suppress(Exception):  # else it stays pending, for the next start
            await self.db.transaction(
                partial(set_aside, report_id=report_id, why=f"not decided: {type(exc).__name__}")
            )


class ReportServer(SMTP):
    """aiosmtpd with no line limit worth the name: RFC 5321 allows 1,000 characters, real
    reports (Amazon SES, GMX) send longer lines, and a 500 would bounce the bounce."""

    line_length_limit = 1024 * 1024


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
