"""A pool of reused SMTP connections to the relay, a token-bucket rate limit, and SMTP replies
normalised into one shape: sent, temporary (4xx, timeouts, dropped connections) or permanent
(5xx; 5.1.x address failures and 550 at RCPT are hard bounces).

A message composed for SMTPUTF8 (a recipient whose local part is not ASCII) goes with
`MAIL ... BODY=8BITMIME SMTPUTF8` over a connection whose relay offered SMTPUTF8 and 8BITMIME
in its EHLO (a flag read once per connection); where the relay offers neither, it fails alone,
permanently. Every other message goes exactly as before."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiosmtplib

from campaigns.returns.table import Verdict, decide, status_in
from campaigns.sending.ledger import SmtpOutcome
from mailer.delivery.compose import Composed
from mailer.delivery.smtp import (
    ConnectionLost,
    PipeliningConnection,
    Reply,
    content,
    envelope,
    envelope_smtputf8,
)
from mailer.settings import Settings

if TYPE_CHECKING:
    from mailer.delivery.journal import WireRecord

log = logging.getLogger("mailer.smtp")


NO_SMTPUTF8 = (
    "cannot be sent: the address is not ASCII and the relay does not offer SMTPUTF8 (RFC 6531)"
)


# The relay refuses our envelope sender: every message would be, so the rest of a batch
# fails fast (as when the relay cannot be reached).
SENDER_REFUSED = "relay refused our sender"
JOURNAL_DOWN = "not sent: the wire journal cannot be written"


class RelayError(Exception):
    """The relay itself fails (cannot connect, refuses our sender, rejects our login): not
    the recipient's fault. The dispatcher counts these against its error budget."""


class TokenBucket:
    """At most `rate` messages per second on average, bursts up to `rate`; 0 = unlimited."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.updated = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        if self.rate <= 0:
            return
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


def classify(delivery_id: int, code: int, message: str) -> SmtpOutcome:
    """One SMTP reply as an outcome. A permanent refusal is read by the same decision table as
    bounce reports (C17): about the address (5.1.1, "no such user"), a hard bounce; about the
    sender or the message (5.7.x, "spam", "policy"), a block that says nothing against it."""
    text = f"{code} {message}".strip()
    if 200 <= code < 300:
        return SmtpOutcome(delivery_id, "sent")
    if 400 <= code < 500:
        # 421: the relay closes the session, whoever the recipient (RFC 5321 3.8); any other
        # 4xx is about this message or recipient (greylisting): its own retry, nothing more.
        return SmtpOutcome(delivery_id, "temporary", text, relay_failure=code == 421)
    verdict = decide(status_in(text), text).verdict
    return SmtpOutcome(
        delivery_id,
        "permanent",
        text,
        hard_bounce=verdict == Verdict.HARD,
        block=verdict == Verdict.BLOCK,
    )


class SmtpPool:
    """Connections to the relay, reused across batches and runs. Each lane (connection) takes
    messages from the batch's queue and pipelines them when the relay allows it."""

    def __init__(self, settings: Settings, size: int, rate: int = 0, timeout: float = 30) -> None:
        self.settings = settings
        self.size = size
        self.whole = (size, rate)  # this process's limits when it sends alone
        self.timeout = timeout
        self.bucket = TokenBucket(rate)
        self._idle: asyncio.Queue[PipeliningConnection | None] = asyncio.Queue()
        self._excess = 0  # connections to retire as they come back (the share shrank)
        self._quitting: set[asyncio.Future[None]] = set()
        for _ in range(size):
            self._idle.put_nowait(None)  # connected lazily

    def share(self, among: int) -> None:
        """Take this process's part of the relay's limits when `among` processes send
        through it (the workers' beats): connections and rate are one limit for all of them."""
        whole_size, whole_rate = self.whole
        size = max(1, whole_size // max(1, among))
        rate = whole_rate and max(1, whole_rate // max(1, among))
        self.bucket.rate = rate
        self.bucket.tokens = min(self.bucket.tokens, float(rate))
        change, self.size = size - self.size, size
        while change > 0 and self._excess:
            change, self._excess = change - 1, self._excess - 1
        for _ in range(change):
            self._idle.put_nowait(None)
        self._excess += max(0, -change)
        while self._excess and not self._idle.empty():  # idle ones go now
            self._retire(self._idle.get_nowait())

    def _retire(self, connection: PipeliningConnection | None) -> None:
        self._excess -= 1
        if connection is not None and connection.is_open:
            # A polite QUIT, in the background: the relay sees a session end, not a drop.
            quitting = asyncio.ensure_future(connection.quit())
            self._quitting.add(quitting)
            quitting.add_done_callback(self._quitting.discard)

    async def _connect(self) -> PipeliningConnection:
        """Greeting, EHLO, STARTTLS and AUTH through aiosmtplib; then our pipelining protocol."""
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            use_tls=s.smtp_tls == "tls",
            start_tls=s.smtp_tls == "starttls",
            timeout=self.timeout,
        )
        try:
            await client.connect()
            if s.smtp_username and s.smtp_password:
                await client.login(s.smtp_username, s.smtp_password)
            if not client.supports_extension("pipelining"):
                await client.ehlo()  # lock-step from here: make sure the session is fresh
            return PipeliningConnection.take_over(client, self.timeout)
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise RelayError(f"relay refused our login ({exc.code})") from exc
        except (aiosmtplib.SMTPException, OSError, ConnectionLost) as exc:
            client.close()
            raise RelayError(f"cannot connect to the relay: {type(exc).__name__}") from exc

    async def send_all(
        self, messages: Sequence[tuple[int, Composed]], wire: WireRecord | None = None
    ) -> list[SmtpOutcome]:
        """Send each (delivery id, message) over the pool; one outcome per message. With a
        wire journal's record, a message is written only once the record has released it,
        and each answer goes into the record."""
        batch = _SendAll(messages, wire)
        lanes = min(self.size, len(messages))
        await asyncio.gather(*(self._lane(batch) for _ in range(lanes)))
        return batch.outcomes + batch.without_outcome()

    async def _lane(self, batch: _SendAll) -> None:
        connection = await self._idle.get()
        try:
            while batch.queue:
                if batch.relay_down:  # the relay cannot be reached: fail the rest fast
                    delivery_id, _ = batch.queue.popleft()
                    batch.record(
                        SmtpOutcome(delivery_id, "temporary", batch.relay_down, relay_failure=True)
                    )
                    continue
                if connection is None or not connection.is_open:
                    try:
                        connection = await self._connect()
                    except RelayError as exc:
                        batch.relay_down = str(exc)
                        connection = None
                        continue
                try:
                    if connection.pipelining:
                        keep = await self._pipelined(connection, batch)
                    else:
                        keep = await self._lockstep(connection, batch)
                except Exception:  # a bug, not the relay: this lane stops, the others go on
                    log.exception("an SMTP lane failed")
                    keep = False
                if not keep:
                    connection.close()
                    connection = None
        except asyncio.CancelledError:
            # Cancelled mid-transaction (a worker's drain ran out): the relay may still owe a
            # reply on this connection, so it is not reused, nor asked to QUIT by close().
            if connection is not None:
                connection.close()
                connection = None
            raise
        finally:
            if self._excess:
                self._retire(connection)
            else:
                self._idle.put_nowait(connection)

    async def _next(self, batch: _SendAll, connection: PipeliningConnection) -> _Item | None:
        """The next message this lane sends, after its turn in the rate limit. A message that
        needs SMTPUTF8 fails alone, permanently, where the relay does not offer it: it cannot
        go out through this relay, and says nothing against the address (no hard bounce)."""
        wire = batch.wire
        while batch.queue:
            delivery_id, message = batch.queue.popleft()
            if wire is not None and not wire.take(delivery_id) and not await wire.wait(delivery_id):
                batch.record(SmtpOutcome(delivery_id, "temporary", JOURNAL_DOWN))
                continue
            if message.smtputf8:
                if not connection.smtputf8:
                    batch.record(SmtpOutcome(delivery_id, "permanent", NO_SMTPUTF8))
                    continue
                first = envelope_smtputf8(message.envelope_from, message.recipient)
            else:
                try:
                    first = envelope(message.envelope_from, message.recipient)
                except UnicodeEncodeError:  # not composed for SMTPUTF8: cannot go as it is
                    detail = "cannot be sent: the address is not ASCII"
                    batch.record(SmtpOutcome(delivery_id, "permanent", detail))
                    continue
            await self.bucket.take()
            return _Item(delivery_id, first, message.data)
        return None

    async def _pipelined(self, connection: PipeliningConnection, batch: _SendAll) -> bool:
        """Send messages until the batch is empty (True: keep the connection) or the connection
        fails (False). One write per message: its content, then the next message's envelope."""
        item = await self._next(batch, connection)
        if item is None:
            return True
        try:
            await connection.write(item.envelope)
        except ConnectionLost:  # it closed while we waited for the rate limit
            batch.retry(item)
            return False
        expect_reset = False
        while True:
            try:
                replies = await connection.replies(4 if expect_reset else 3)
            except ConnectionLost:
                batch.retry(item)  # no content was written: it was not sent
                return False
            mail, rcpt, data = replies[-3:]
            expect_reset = False
            following = await self._next(batch, connection)
            if data.code == 354:
                accepted = mail.ok and rcpt.ok
                # A relay that says 354 after refusing the envelope gets an empty message.
                payload = content(item.data) if accepted else b".\r\n"
                if following is not None:
                    payload += following.envelope
                if not connection.is_open:  # lost before a byte of it was written
                    if accepted:
                        batch.retry(item)
                    else:
                        batch.record(_verdict(item, mail, rcpt, data))
                    if following is not None:
                        batch.retry(following)
                    return False
                try:
                    await connection.write(payload)
                    (final,) = await connection.replies(1)
                except ConnectionLost as exc:
                    if following is not None:
                        batch.retry(following)
                    batch.record(
                        _lost_after_content(item, exc)
                        if accepted
                        else _verdict(item, mail, rcpt, data)
                    )
                    return False
                batch.record(_verdict(item, mail, rcpt, data, final))
                closing = 421 in (mail.code, rcpt.code, data.code, final.code)
            else:
                batch.record(_verdict(item, mail, rcpt, data))
                closing = 421 in (mail.code, rcpt.code, data.code)
                if not closing:
                    # The refused transaction may hold a sender: reset it before the next one.
                    await _write_or_lose(
                        connection, b"RSET\r\n" + (following.envelope if following else b"")
                    )
                    expect_reset = True
                    if following is None:
                        try:
                            await connection.replies(1)
                        except ConnectionLost:
                            return False
            if closing:  # the relay is closing this connection
                if following is not None:
                    batch.retry(following)
                return False
            if following is None:
                return True
            item = following

    async def _lockstep(self, connection: PipeliningConnection, batch: _SendAll) -> bool:
        """For a relay without PIPELINING: each command waits for its reply."""
        while (item := await self._next(batch, connection)) is not None:
            mail_from, rcpt_to, data_command = item.envelope.split(b"\r\n")[:3]
            written = False
            try:
                replies: list[Reply] = []
                for command in (mail_from, rcpt_to, data_command):
                    await connection.write(command + b"\r\n")
                    (reply,) = await connection.replies(1)
                    replies.append(reply)
                    if not reply.ok:
                        break
                if len(replies) == 3:
                    if not connection.is_open:  # lost before a byte of it was written
                        raise ConnectionLost("the connection closed before the message")
                    written = True
                    await connection.write(content(item.data))
                    replies += await connection.replies(1)
                else:
                    await connection.write(b"RSET\r\n")
                    await connection.replies(1)
            except ConnectionLost as exc:
                if not written and all(reply.ok for reply in replies):
                    batch.retry(item)  # no refusal and no content: it was not sent
                elif written:
                    batch.record(_lost_after_content(item, exc))
                else:
                    batch.record(_verdict(item, *_padded(replies)))
                return False
            batch.record(_verdict(item, *_padded(replies)))
            if any(reply.code == 421 for reply in replies):
                return False
        return True

    async def close(self) -> None:
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            if connection is not None and connection.is_open:
                await connection.quit()


@dataclass(frozen=True)
class _Item:
    delivery_id: int
    envelope: bytes  # MAIL, RCPT and DATA
    data: bytes


class _SendAll:
    """The messages of one send_all, shared by its lanes."""

    def __init__(
        self, messages: Sequence[tuple[int, Composed]], wire: WireRecord | None = None
    ) -> None:
        self.wire = wire
        self.queue: deque[tuple[int, Composed]] = deque(messages)
        self.by_id = dict(messages)
        if wire is not None:
            wire.reach(self.by_id)
        self.outcomes: list[SmtpOutcome] = []
        self.relay_down = ""  # why the relay cannot be reached, once it cannot
        self.retried: set[int] = set()

    def without_outcome(self) -> list[SmtpOutcome]:
        """Messages a failed lane left without an outcome: never handed over (still queued)
        are retried later; in the lane's hands, they may have gone out, so they are not."""
        done = {outcome.delivery_id for outcome in self.outcomes}
        waiting = {delivery_id for delivery_id, _ in self.queue}
        return [
            SmtpOutcome(i, "temporary", "not sent: the SMTP client failed")
            if i in waiting
            else SmtpOutcome(
                i, "unknown", "the SMTP client failed while sending it", relay_failure=True
            )
            for i in self.by_id
            if i not in done
        ]

    def record(self, outcome: SmtpOutcome) -> None:
        self.outcomes.append(outcome)
        if self.wire is not None:
            self.wire.answer(outcome)
        if outcome.detail.startswith(SENDER_REFUSED):
            self.relay_down = self.relay_down or outcome.detail  # the rest fails fast

    def retry(self, item: _Item) -> None:
        """A message that was not sent because its connection failed before its content was
        written: once more on another connection, then a temporary failure (retried later)."""
        if item.delivery_id in self.retried:
            # Twice, before any reply about it: the relay's connections, not the message.
            detail = "connection lost before the message was sent"
            self.record(SmtpOutcome(item.delivery_id, "temporary", detail, relay_failure=True))
            return
        self.retried.add(item.delivery_id)
        self.queue.append((item.delivery_id, self.by_id[item.delivery_id]))


_NO_REPLY = Reply(0, "")


def _padded(replies: list[Reply]) -> tuple[Reply, Reply, Reply, Reply | None]:
    padded = [*replies, _NO_REPLY, _NO_REPLY, _NO_REPLY][:3]
    return padded[0], padded[1], padded[2], replies[3] if len(replies) > 3 else None


def _verdict(
    item: _Item, mail: Reply, rcpt: Reply, data: Reply, final: Reply | None = None
) -> SmtpOutcome:
    """The outcome of one transaction from its replies: the first refusal decides."""
    delivery_id = item.delivery_id
    if mail.code == 421:  # the relay closes the session: not about our sender
        return classify(delivery_id, mail.code, mail.text)
    if not mail.ok:
        # Our own envelope sender refused: the relay's configuration, not the recipient.
        detail = f"{SENDER_REFUSED}: {mail.code} {mail.text}"
        return SmtpOutcome(delivery_id, "temporary", detail, relay_failure=True)
    if not rcpt.ok:
        return classify(delivery_id, rcpt.code, rcpt.text)
    if data.code != 354:
        return classify(delivery_id, data.code, data.text)
    if final is None:
        return _lost_after_content(item, "no reply to the end of the message")
    return classify(delivery_id, final.code, final.text)


def _lost_after_content(item: _Item, why: object) -> SmtpOutcome:
    """The whole message was written and no reply came: the relay may have taken it and
    lost only its answer (RFC 1047). Sending it again could deliver it twice: `unknown`."""
    detail = f"connection lost after the message was written, before the reply: {why}"
    # A relay that loses every connection there is failing: it counts toward the pause.
    return SmtpOutcome(item.delivery_id, "unknown", detail, relay_failure=True)


async def _write_or_lose(connection: PipeliningConnection, data: bytes) -> None:
    with contextlib.suppress(ConnectionLost):  # the next read reports it
        await connection.write(data)
