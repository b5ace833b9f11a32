"""One SMTP connection that pipelines (RFC 2920), for the dispatcher's hot path.

aiosmtplib sets the connection up (TLS or STARTTLS, EHLO, AUTH) and is what every other part of
the service sends with; it waits for each reply before it writes the next command, so a message
costs four round trips. Once the session is ready, this module takes over the socket: a message
is one write (its content, the end-of-data dot, then the next message's MAIL, RCPT and DATA,
which RFC 2920 allows in one group) and one wake-up when the replies are in.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import NamedTuple, cast

import aiosmtplib


class Reply(NamedTuple):
    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400


class ConnectionLost(Exception):
    """The connection closed, timed out or spoke garbage: what was in flight is unknown."""


MAX_REPLY_LINE = 8192


class _ReplyProtocol(asyncio.Protocol):
    """Parses replies as they arrive and wakes the reader once it has as many as it asked for."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.lines: list[str] = []  # the lines of a multi-line reply read so far
        self.replies: deque[Reply] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.wanted = 0
        self.failure: ConnectionLost | None = None
        self.can_write: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = bytes(self.buffer) + data
        *lines, rest = data.split(b"\n")
        self.buffer = bytearray(rest)
        if len(rest) > MAX_REPLY_LINE:
            self._fail("reply line too long")
            return
        for line in lines:
            code, separator = line[:3], line[3:4]
            if not code.isdigit() or separator not in (b" ", b"-", b"\r", b""):
                self._fail("malformed reply")
                return
            text = line[4:].strip().decode("utf-8", "replace")
            if separator == b"-":  # a line of a multi-line reply; its last line follows
                self.lines.append(text)
                continue
            if self.lines:
                text = "\n".join([*self.lines, text])
                self.lines = []
            self.replies.append(Reply(int(code), text))
        waiter = self.waiter
        if waiter is not None and len(self.replies) >= self.wanted and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail("connection closed" if exc is None else f"connection lost: {type(exc).__name__}")

    def eof_received(self) -> bool:
        self._fail("connection closed by the relay")
        return False

    def pause_writing(self) -> None:
        self.can_write = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.can_write is not None and not self.can_write.done():
            self.can_write.set_result(None)
        self.can_write = None

    def _fail(self, why: str) -> None:
        if self.failure is None:
            self.failure = ConnectionLost(why)
        for future in (self.waiter, self.can_write):
            if future is not None and not future.done():
                future.set_exception(self.failure)
        if self.transport is not None:
            self.transport.close()


class PipeliningConnection:
    """A ready SMTP session (greeted, EHLO, TLS and AUTH as configured) on our own protocol."""

    def __init__(
        self,
        transport: asyncio.Transport,
        pipelining: bool,
        timeout: float,
        smtputf8: bool = False,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.protocol = _ReplyProtocol(self.loop)
        self.protocol.transport = transport
        transport.set_protocol(self.protocol)
        self.transport = transport
        self.pipelining = pipelining  # the relay advertised PIPELINING
        self.timeout = timeout
        # The relay advertised SMTPUTF8 and 8BITMIME (RFC 6531 needs both), read once from
        # its EHLO: a message with a UTF-8 address can go over this connection.
        self.smtputf8 = smtputf8

    @classmethod
    def take_over(cls, client: aiosmtplib.SMTP, timeout: float) -> PipeliningConnection:
        """Take a connected, logged-in aiosmtplib client's socket; the client is not used again."""
        transport = client.transport
        # Duck-typed: uvloop's transports (uvicorn's loop) are not asyncio.Transport subclasses.
        if transport is None or transport.is_closing() or not hasattr(transport, "write"):
            raise ConnectionLost("the relay closed the connection during setup")
        return cls(
            cast(asyncio.Transport, transport),
            client.supports_extension("pipelining"),
            timeout,
            smtputf8=client.supports_extension("smtputf8")
            and client.supports_extension("8bitmime"),
        )

    @property
    def is_open(self) -> bool:
        return self.protocol.failure is None and not self.transport.is_closing()

    async def write(self, data: bytes) -> None:
        if self.protocol.failure is not None:
            raise self.protocol.failure
        self.transport.write(data)
        can_write = self.protocol.can_write
        if can_write is not None:  # the relay reads slower than we write
            timer = self.loop.call_later(self.timeout, self._time_out, can_write)
            try:
                await can_write
            finally:
                timer.cancel()

    async def replies(self, count: int) -> list[Reply]:
        """The next `count` replies, in order; ConnectionLost if they do not all come."""
        protocol = self.protocol
        if len(protocol.replies) < count:
            if protocol.failure is not None:
                raise protocol.failure
            protocol.wanted = count
            protocol.waiter = waiter = self.loop.create_future()
            timer = self.loop.call_later(self.timeout, self._time_out, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                protocol.waiter = None
        return [protocol.replies.popleft() for _ in range(count)]

    def _time_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            self.protocol._fail(f"no reply within {self.timeout:.0f} s")

    async def quit(self) -> None:
        try:
            await self.write(b"QUIT\r\n")
            await self.replies(1)
        except ConnectionLost:
            pass
        self.close()

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def envelope(mail_from: str, recipient: str) -> bytes:
    """MAIL, RCPT and DATA of one message: one command group under PIPELINING."""
    return f"MAIL FROM:<{mail_from}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode("ascii")


def envelope_smtputf8(mail_from: str, recipient: str) -> bytes:
    """The same for a message whose addresses need SMTPUTF8 (RFC 6531): they go as UTF-8, and
    MAIL says so; its header carries UTF-8 (RFC 6532), so it is 8-bit (BODY=8BITMIME,
    RFC 6152). Only over a connection whose relay offers both."""
    return (
        f"MAIL FROM:<{mail_from}> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<{recipient}>\r\nDATA\r\n"
    ).encode()


def content(data: bytes) -> bytes:
    """A message as the DATA phase carries it: CRLF line ends, dot-stuffed, ending in a dot."""
    if data.count(b"\n") != data.count(b"\r\n"):  # our composer writes CRLF: this is rare
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"
