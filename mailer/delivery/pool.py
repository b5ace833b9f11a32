"""A pool of reused SMTP connections to the relay, a token-bucket rate limit, and SMTP replies
normalised into one shape: sent, temporary (4xx, timeouts, dropped connections) or permanent
(5xx; 5.1.x address failures and 550 at RCPT are hard bounces)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence

import aiosmtplib

from campaigns.dispatch import Outcome
from mailer.delivery.compose import Composed
from mailer.settings import Settings

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


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


def classify(delivery_id: int, code: int, message: str, stage: str) -> Outcome:
    """One SMTP reply as an outcome. Only an address failure is a hard bounce (C17): an
    enhanced status 5.1.x, or a plain 550 to RCPT without one. A 5.7.x (policy, relaying
    denied) fails the message but says nothing about the address."""
    text = f"{code} {message}".strip()
    if 200 <= code < 300:
        return Outcome(delivery_id, "sent")
    if 400 <= code < 500:
        return Outcome(delivery_id, "temporary", text)
    enhanced = _ENHANCED.search(message)
    if enhanced is not None:
        hard = enhanced.group(1) == "5" and enhanced.group(2) == "1"
    else:
        hard = stage == "rcpt" and code == 550
    return Outcome(delivery_id, "permanent", text, hard_bounce=hard)


class SmtpPool:
    def __init__(self, settings: Settings, size: int, rate: int = 0, timeout: float = 30) -> None:
        self.settings = settings
        self.size = size
        self.timeout = timeout
        self.bucket = TokenBucket(rate)
        self._idle: asyncio.Queue[aiosmtplib.SMTP | None] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(None)  # connected lazily

    async def _connect(self) -> aiosmtplib.SMTP:
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
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise RelayError(f"relay refused our login ({exc.code})") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise RelayError(f"cannot connect to the relay: {type(exc).__name__}") from exc
        return client

    async def send_all(self, messages: Sequence[tuple[int, Composed]]) -> list[Outcome]:
        """Send each (delivery id, message) over the pool; one outcome per message."""
        outcomes: list[Outcome] = []
        queue: asyncio.Queue[tuple[int, Composed]] = asyncio.Queue()
        for item in messages:
            queue.put_nowait(item)

        relay_down: list[str] = []  # once the relay cannot be reached, fail the rest fast

        async def lane() -> None:
            client = await self._idle.get()
            try:
                while not queue.empty():
                    delivery_id, message = queue.get_nowait()
                    if relay_down:
                        outcomes.append(
                            Outcome(delivery_id, "temporary", relay_down[0], relay_failure=True)
                        )
                        continue
                    await self.bucket.take()
                    if client is None or not client.is_connected:
                        try:
                            client = await self._connect()
                        except RelayError as exc:
                            relay_down.append(str(exc))
                            outcomes.append(
                                Outcome(delivery_id, "temporary", str(exc), relay_failure=True)
                            )
                            client = None
                            continue
                    outcome, keep = await self._send_one(client, delivery_id, message)
                    outcomes.append(outcome)
                    if outcome.relay_failure and outcome.kind == "temporary":
                        relay_down.append(outcome.detail)
                    if not keep:
                        client.close()
                        client = None
            finally:
                self._idle.put_nowait(client)

        lanes = min(self.size, len(messages))
        await asyncio.gather(*(lane() for _ in range(lanes)))
        return outcomes

    async def _send_one(
        self, client: aiosmtplib.SMTP, delivery_id: int, message: Composed
    ) -> tuple[Outcome, bool]:
        """(outcome, keep the connection)."""
        try:
            await client.sendmail(message.envelope_from, [message.recipient], message.data)
        except aiosmtplib.SMTPSenderRefused as exc:
            # Our own envelope sender refused: the relay's configuration, not the recipient.
            await _reset(client)
            detail = f"relay refused our sender: {exc.code} {exc.message}"
            return Outcome(delivery_id, "temporary", detail, relay_failure=True), True
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusal = exc.recipients[0]
            await _reset(client)
            return classify(delivery_id, refusal.code, refusal.message, "rcpt"), True
        except aiosmtplib.SMTPResponseException as exc:
            await _reset(client)
            return classify(delivery_id, exc.code, exc.message, "data"), exc.code != 421
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            detail = f"connection lost: {type(exc).__name__}"
            return Outcome(delivery_id, "temporary", detail), False
        except Exception as exc:
            detail = f"cannot be sent: {type(exc).__name__}"
            return Outcome(delivery_id, "permanent", detail), False
        return Outcome(delivery_id, "sent"), True

    async def close(self) -> None:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client is not None and client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()


async def _reset(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await client.rset()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
