"""What the web layer and the command line share: engine, sessions, domain context."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from jinja2 import Environment
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from campaigns.clock import Clock, SystemClock
from campaigns.context import Context
from campaigns.errors import Conflict
from campaigns.suppression.entries import AddressHasher
from campaigns.tokens import TokenSigner
from mailer.db import make_engine
from mailer.delivery.compose import Composed
from mailer.delivery.dkim import DkimSigner
from mailer.delivery.transport import SmtpTransport
from mailer.settings import Settings
from mailer.web.pages_env import page_environment

T = TypeVar("T")
ATTEMPTS = 3


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    context: Context
    signer: TokenSigner
    transport: SmtpTransport
    pages: Environment
    dkim: DkimSigner | None = None

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None) -> Services:
        engine = make_engine(settings.database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=async_sessionmaker(engine, expire_on_commit=False),
            context=Context(
                config=settings.business,
                hasher=AddressHasher(settings.secret_keys),
                clock=clock or SystemClock(),
            ),
            signer=TokenSigner(settings.secret_keys),
            transport=SmtpTransport(settings),
            pages=page_environment(settings.templates_dir),
            dkim=(
                DkimSigner.from_file(
                    settings.dkim_selector,
                    settings.business.sender.mail_domain,
                    settings.dkim_key_file,
                )
                if settings.dkim_selector and settings.dkim_key_file
                else None
            ),
        )

    async def transaction(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, retry: bool = True
    ) -> T:
        """Run `work` in one transaction and commit: a request changes everything or nothing.

        A unique-key race with a concurrent request (two pushes of one new address) rolls
        back and runs again; the second run sees the other request's committed row. Work that
        talks to the outside world (an SMTP handoff) passes `retry=False`: running it again
        would send again.
        """
        attempts = ATTEMPTS if retry else 1
        for attempt in range(1, attempts + 1):
            async with self.sessions() as session:
                try:
                    result = await work(session)
                    await session.commit()
                    return result
                except IntegrityError as exc:
                    await session.rollback()
                    if attempt == attempts:
                        raise Conflict("the request conflicts with a concurrent change") from exc
                except DBAPIError as exc:
                    await session.rollback()
                    if attempt == attempts or not _is_transient(exc):
                        raise
                await asyncio.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    async def transaction_mail(self, message: Composed) -> None:
        """Send one message now over the relay (test sends); errors reach the caller."""
        await self.transport.send(message)

    async def close(self) -> None:
        await self.engine.dispose()


def _is_transient(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return "database is locked" in text or "deadlock" in text or "serializ" in text
