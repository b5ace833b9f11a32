"""A real SMTP server for tests (aiosmtpd), recording what it receives, with error injection."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    at: float = 0.0  # time.monotonic() when the server accepted it
    mail_options: list[str] = field(default_factory=list)  # MAIL parameters, upper case

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class RecordingHandler:
    received: list[Received] = field(default_factory=list)
    # Error injection: replies to give, in order, before accepting (e.g. "421 4.7.0 busy").
    mail_replies: list[str] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    drop_data: int = 0  # drop the connection in the middle of this many DATA commands
    drop_rcpt: int = 0  # drop the connection instead of answering this many RCPT commands
    refuse: dict[str, str] = field(default_factory=dict)  # address -> reply, every time
    # (n, pid): on accepting the n-th message, SIGKILL that process before it hears "250"
    kill_on: tuple[int, int] | None = None
    # Advertise PIPELINING (RFC 2920), as Postfix does: the dispatcher then pipelines. aiosmtpd
    # reads commands one after another, so it serves pipelined clients as they are.
    pipelining: bool = True
    # Advertise SMTPUTF8 (RFC 6531) and take UTF-8 in commands, as aiosmtpd's Controller does
    # by default. False: a relay without it, whose commands are strict ASCII (read when a
    # connection is accepted). Either way a UTF-8 address without SMTPUTF8 on MAIL is refused.
    smtputf8: bool = True
    # A slow relay: each DATA waits this long before its reply (a long wait stalls it).
    data_delay: float = 0.0
    data_started: int = 0  # DATA commands received, answered or not (yet)
    greetings: int = 0  # EHLO commands received: about one per connection
    # Greylisting: these addresses get 450 on their first RCPT, those at the end of their
    # first DATA; accepted when they come back.
    greylist_rcpt: set[str] = field(default_factory=set)
    greylist_data: set[str] = field(default_factory=set)
    most_sessions: int = 0  # the most connections open at once (since the last reset)

    def __post_init__(self) -> None:
        # Connections open now: not a field, so a reset (and equality) leaves it alone; pools
        # keep connections open across tests.
        self.sessions = 0

    def reset(self) -> None:
        """Every field back to its default, a field added later included: nothing one test
        set up (an injected reply, a recorded message) is left for the next."""
        for spec in dataclasses.fields(self):
            if spec.default_factory is not dataclasses.MISSING:
                setattr(self, spec.name, spec.default_factory())
            elif spec.default is not dataclasses.MISSING:
                setattr(self, spec.name, spec.default)
            else:
                raise TypeError(f"RecordingHandler.{spec.name} needs a default to be reset")

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        self.greetings += 1
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.mail_replies:
            return self.mail_replies.pop(0)
        if not address.isascii() and "SMTPUTF8" not in options:
            return NEEDS_SMTPUTF8
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        if not address.isascii() and "SMTPUTF8" not in envelope.mail_options:
            return NEEDS_SMTPUTF8
        if self.drop_rcpt:
            self.drop_rcpt -= 1
            server.transport.close()
            return "421 4.4.2 connection dropped"
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        if address in self.greylist_rcpt:
            self.greylist_rcpt.discard(address)
            return "450 4.2.0 greylisted, come back later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_started += 1
        received = self.received  # a message answered after a reset is not the next test's
        if self.data_delay:
            await asyncio.sleep(self.data_delay)  # cancelled if the client hangs up
        if self.drop_data:
            self.drop_data -= 1
            server.transport.close()  # the client sees the connection drop mid-DATA
            return "421 4.4.2 connection dropped"
        if self.data_replies:
            return self.data_replies.pop(0)
        if self.greylist_data & set(envelope.rcpt_tos):
            self.greylist_data -= set(envelope.rcpt_tos)
            return "451 4.7.1 greylisted, come back later"
        received.append(
            Received(
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                bytes(envelope.content),
                time.monotonic(),
                list(envelope.mail_options),
            )
        )
        if self.kill_on is not None and len(received) == self.kill_on[0]:
            os.kill(self.kill_on[1], signal.SIGKILL)  # the sender dies with this one in flight
        return "250 OK: queued"

    async def wait_for(self, count: int, within: float = 10) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} messages, got {len(self.received)}")
            await asyncio.sleep(0.02)
        return self.received


# The answer to a UTF-8 address in a transaction that did not ask for SMTPUTF8 (553 with
# RFC 6531's enhanced code 5.6.7, "non-ASCII addresses not permitted").
NEEDS_SMTPUTF8 = "553 5.6.7 SMTPUTF8 is required for a non-ASCII address"


class _Controller(Controller):
    """Each connection's server takes UTF-8 in commands and advertises SMTPUTF8 only when the
    handler says so at the moment the connection is accepted."""

    def factory(self) -> SMTP:
        handler = self.handler
        enabled = handler.smtputf8 if isinstance(handler, RecordingHandler) else True
        return _CountingSMTP(handler, **{**self.SMTP_kwargs, "enable_SMTPUTF8": enabled})


class _CountingSMTP(SMTP):
    """Counts the connections open at once (a relay's connection limit, seen from the relay)."""

    def connection_made(self, transport: Any) -> None:
        handler = self.event_handler
        if isinstance(handler, RecordingHandler):
            handler.sessions += 1
            handler.most_sessions = max(handler.most_sessions, handler.sessions)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        handler = self.event_handler
        if isinstance(handler, RecordingHandler):
            handler.sessions -= 1
        super().connection_lost(error)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SmtpServer:
    def __init__(self, port: int | None = None) -> None:
        self.handler = RecordingHandler()
        self.port = port or free_port()
        self.controller = _Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
