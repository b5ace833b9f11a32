"""Sending over SMTP (aiosmtplib) to the configured relay."""

from __future__ import annotations

import logging

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
        s = self.settings
        await aiosmtplib.send(
            message.data,
            sender=message.envelope_from,
            recipients=[message.recipient],
            mail_options=SMTPUTF8_OPTIONS if message.smtputf8 else None,
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password,
            use_tls=s.smtp_tls == "tls",
            start_tls=s.smtp_tls == "starttls",
            timeout=self.timeout,
        )

    async def send_quietly(self, message: Composed) -> bool:
        """For service mails after the fact (acknowledgements): log failures, never raise.
        The log names the failure, not the address (no personal data in logs)."""
        try:
            await self.send(message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("service mail not sent: %s", type(exc).__name__)
            return False
        return True
