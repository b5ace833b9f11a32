"""Sending over SMTP (aiosmtplib) to the configured relay."""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from functools import cache

import aiosmtplib

from mailer.delivery.compose import Composed
from mailer.settings import Settings

log = logging.getLogger("mailer.delivery")
# RFC 6531: UTF-8 addresses; the header carries UTF-8 (RFC 6532), so the body is 8-bit.
SMTPUTF8_OPTIONS = ("SMTPUTF8", "BODY=8BITMIME")


class SmtpTransport:
    def __init__(self, settings: Settings, timeout: float = 30) -> None:
        self.settings = settings
        self.timeout = timeout

    async def send(self, message: Composed) -> None:
        """Hand one message to the relay; raises aiosmtplib's errors on failure (a message
        that needs SMTPUTF8, to a relay that does not offer it: SMTPNotSupported)."""
        async with self._client() as client:
            await _hand_over(client, message)

    async def send_quietly(self, message: Composed) -> bool:
        """For service mails after the fact (acknowledgements): log failures, never raise.
        The log names the failure, not the address (no personal data in logs)."""
        (sent,) = await self.send_all_quietly([message])
        return sent

    async def send_all_quietly(self, messages: Sequence[Composed]) -> list[bool]:
        """Service mails over one connection (a burst of acknowledgements): whether each
        went. A message the relay refuses fails alone; once the connection fails, the rest
        are left for a later round. Logged like `send_quietly`."""
        sent: list[bool] = []
        if not messages:
            return sent
        try:
            async with self._client() as client:
                for message in messages:
                    try:
                        await _hand_over(client, message)
                    except aiosmtplib.SMTPServerDisconnected:
                        raise
                    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused,
                            aiosmtplib.SMTPNotSupported) as exc:  # fmt: skip
                        log.warning("service mail not sent: %s", type(exc).__name__)
                        sent.append(False)  # aiosmtplib has reset the transaction
                        continue
                    sent.append(True)
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("service mail not sent: %s", type(exc).__name__)
        return sent + [False] * (len(messages) - len(sent))

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password,
            use_tls=s.smtp_tls == "tls",
            start_tls=s.smtp_tls == "starttls",
            timeout=self.timeout,
            local_hostname=_local_hostname(),
        )


async def _hand_over(client: aiosmtplib.SMTP, message: Composed) -> None:
    await client.sendmail(
        message.envelope_from,
        [message.recipient],
        message.data,
        mail_options=SMTPUTF8_OPTIONS if message.smtputf8 else None,
    )


@cache
def _local_hostname() -> str:
    """For EHLO, looked up once per process (aiosmtplib asks the resolver per connection)."""
    return socket.getfqdn()
