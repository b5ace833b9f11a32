"""Sends the acknowledgements of opt-outs (C15) from their outbox (campaigns/acknowledgements.py):
right after the objection's commit, by the process that took it, and every few seconds by the
worker, for whatever a restart or a failed send left."""

from __future__ import annotations

from collections.abc import Sequence

from campaigns.acknowledgements import claim_acknowledgements, mark_sent
from campaigns.context import Context
from campaigns.objections import Addressee
from mailer.db import Database
from mailer.delivery.notices import Notices


class Acknowledger:
    def __init__(self, db: Database, ctx: Context, notices: Notices) -> None:
        self.db = db
        self.ctx = ctx
        self.notices = notices

    async def after_commit(self, addressees: Sequence[Addressee]) -> None:
        """The acknowledgements of these opt-outs, now: they were stored claimed for this
        process, so they go without another claim."""
        stored = {a.acknowledgement: a for a in addressees if a.acknowledgement is not None}
        done = await self.notices.acknowledge(list(stored.values()))
        sent = [ack_id for ack_id, ok in zip(stored, done, strict=True) if ok]
        if sent:
            await self.db.transaction(lambda s: mark_sent(s, sent, self.ctx.clock))

    async def send(self, ids: Sequence[int] | None = None) -> int:
        """Send these acknowledgements, or all that are due; how many went."""
        clock = self.ctx.clock
        claimed = await self.db.transaction(lambda s: claim_acknowledgements(s, clock, ids))
        done = await self.notices.acknowledge(
            [Addressee(email, name, locale) for _, email, name, locale in claimed]
        )
        sent = [ack_id for (ack_id, *_), ok in zip(claimed, done, strict=True) if ok]
        if sent:
            await self.db.transaction(lambda s: mark_sent(s, sent, clock))
        return len(sent)
