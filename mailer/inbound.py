"""The inbound SMTP listener (aiosmtpd), run inside `serve`: mail to
`unsubscribe+<token>@<mail_domain>` unsubscribes like a one-click (C14); anything it cannot map
is kept for review, never acted on by guessing (C20)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from campaigns.context import Context
from campaigns.models import InboundReview
from campaigns.recipients import Addressee, unsubscribe_delivery
from campaigns.tokens import Kind, TokenSigner
from mailer.db import Database

log = logging.getLogger("mailer.inbound")
REVIEW_LIMIT = 64 * 1024


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

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        local, _, domain = address.rpartition("@")
        if domain.lower() != self.domain or not local:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        try:
            for recipient in envelope.rcpt_tos:
                await self._deliver(recipient, content)
        except Exception:
            log.exception("inbound mail not processed")
            return "451 4.3.0 temporary failure, try again later"
        return "250 OK: received"

    async def _deliver(self, recipient: str, content: bytes) -> None:
        local = recipient.rpartition("@")[0].lower()
        tag, _, token = local.partition("+")
        if tag == "unsubscribe":
            delivery_id = self.signer.read_delivery(Kind.UNSUBSCRIBE, token)
            if delivery_id is not None:
                addressee = await self.db.transaction(
                    lambda s: unsubscribe_delivery(s, delivery_id, channel="mailto", ctx=self.ctx)
                )
                if addressee is not None:
                    await self.acknowledge(addressee)
                return
            reason = "unknown_unsubscribe_token"
        elif tag == "bounces":
            reason = "bounce"  # DSN and ARF processing: kept for review until it lands
        else:
            reason = "unknown_mailbox"
        await self._review(recipient, reason, content)

    async def _review(self, recipient: str, reason: str, content: bytes) -> None:
        async def store(session: Any) -> None:
            session.add(
                InboundReview(
                    received_at=self.ctx.clock.now(),
                    recipient=recipient[:320],
                    reason=reason,
                    message=content[:REVIEW_LIMIT].decode("utf-8", "replace"),
                )
            )

        await self.db.transaction(store)
        log.info("inbound mail kept for review: %s", reason)


async def start_listener(handler: InboundHandler, host: str, port: int) -> asyncio.Server:
    """Listen on MAILER_INBOUND_HOST:PORT in the running loop. SO_REUSEPORT lets several
    `serve` workers share the port."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(
            handler,
            hostname=handler.ctx.config.sender.mail_domain,
            data_size_limit=10 * 1024 * 1024,
        ),
        host=host,
        port=port,
        reuse_port=True,
    )
