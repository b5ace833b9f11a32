"""The one composition root: the service's objects are built here, once per process, from the
settings. The web app (`mailer/app.py`, which only maps them to the names controllers ask for)
and every command (`mailer/__main__.py`) start from `Services.build`; nothing else imports
this module. The layers below get only the narrow parts
they use (the database, the domain context, a composer factory, an SMTP pool, the notices),
never the container.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from campaigns.clock import Clock, SystemClock
from campaigns.context import Context
from campaigns.sending.lifecycle import CronParser
from campaigns.suppression.entries import sync_contact_hashes
from campaigns.suppression.hashing import AddressHasher
from campaigns.tokens import TokenSigner
from mailer.db import Database
from mailer.delivery.acknowledger import Acknowledger
from mailer.delivery.compose import Composers
from mailer.delivery.dispatcher import Dispatcher, process_pool
from mailer.delivery.dkim import DkimSigner
from mailer.delivery.journal import WireJournal
from mailer.delivery.notices import Notices
from mailer.delivery.objections import Objections
from mailer.delivery.pool import SmtpPool
from mailer.delivery.transport import SmtpTransport
from mailer.settings import Settings
from mailer.web.console_env import ConsolePages
from mailer.web.pages_env import Pages

if TYPE_CHECKING:  # built only by the processes that run them (APScheduler, aiosmtpd)
    from mailer.inbound import InboundHandler
    from mailer.scheduler import Worker


@dataclass
class Services:
    settings: Settings
    db: Database
    context: Context
    signer: TokenSigner
    transport: SmtpTransport
    composers: Composers
    notices: Notices
    pages: Pages  # the recipient pages' templates and words
    console: ConsolePages  # the marketers' console's templates and words
    parse_cron: CronParser  # the scheduler's parser, for the lifecycle's schedule checks

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None) -> Services:
        business = settings.business
        clock = clock or SystemClock()
        signer = TokenSigner(settings.secret_keys)
        transport = SmtpTransport(settings)
        dkim = (
            DkimSigner.from_file(
                settings.dkim_selector, business.sender.mail_domain, settings.dkim_key_file
            )
            if settings.dkim_selector and settings.dkim_key_file
            else None
        )
        return cls(
            settings=settings,
            db=Database(settings.database_url),
            context=Context(
                config=business, hasher=AddressHasher(settings.secret_keys), clock=clock
            ),
            signer=signer,
            transport=transport,
            composers=Composers(
                sender=business.sender,
                public_url=settings.public_url,
                templates_dir=settings.templates_dir,
                signer=signer,
                clock=clock,
                dkim=dkim,
                category_names=business.category_names,
            ),
            notices=Notices(
                sender=business.sender,
                public_url=settings.public_url,
                signer=signer,
                clock=clock,
                transport=transport,
                acknowledge_opt_outs=business.marketing.acknowledge_opt_outs,
            ),
            pages=Pages(settings.templates_dir, business.sender),
            console=ConsolePages(
                settings.templates_dir, business.sender, secure_cookies=not settings.dev_mode
            ),
            parse_cron=parse_cron,
        )

    async def start(self) -> None:
        """Once, at the start of a process that serves or sends on its own (`serve`, `worker`,
        `campaigns send --now`; not the helpers such a process starts): after a secret was
        added, hash every address under it too, so suppression lookups under it match."""
        hasher = self.context.hasher
        await self.db.transaction(lambda session: sync_contact_hashes(session, hasher))

    def pool(self) -> SmtpPool:
        """This process's share of the relay's connections and rate."""
        return process_pool(self.settings, self.context.config.delivery)

    def dispatcher(self, pool: SmtpPool | None = None) -> Dispatcher:
        """A dispatcher over `pool` (a worker's shared one), or over a pool of its own."""
        own = pool is None
        return Dispatcher(
            self.db,
            self.context,
            self.composers,
            pool or self.pool(),
            owns_pool=own,
            identity=self.settings.worker_id,
            journal=self.journal,
        )

    def worker(self) -> Worker:
        from mailer.scheduler import Worker

        return Worker(
            self.db,
            self.context,
            self.pool(),
            self.dispatcher,
            self.objections.left_over,
            identity=self.settings.worker_id,
            journal=self.journal,
        )

    def inbound_handler(self) -> InboundHandler:
        from mailer.inbound import InboundHandler

        return InboundHandler(self.db, self.context, self.signer, self.objections)

    @cached_property
    def acknowledger(self) -> Acknowledger:
        """Sends the opt-outs' acknowledgements from their outbox (C15)."""
        return Acknowledger(self.db, self.context, self.notices)

    @cached_property
    def objections(self) -> Objections:
        """Takes the hot paths' objections and follows them up (one per process: it batches)."""
        return Objections(self.db, self.context, self.acknowledger)

    @cached_property
    def journal(self) -> WireJournal | None:
        """What of a handed-over batch was on the wire (one per process)."""
        return WireJournal.beside(self.db, self.context.clock)

    async def close(self) -> None:
        if self.__dict__.get("journal") is not None:
            await self.journal.close()  # type: ignore[union-attr]
        await self.db.close()


def parse_cron(expression: str, timezone: str) -> object:
    """The scheduler's crontab parser, loaded when a schedule is first checked."""
    from mailer.scheduler import cron_trigger

    return cron_trigger(expression, timezone)
