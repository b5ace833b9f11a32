"""Sends the acknowledgements of opt-outs (C15) from their outbox (campaigns/acknowledgements.py):
right after the objection's commit, by the process that took it, and every few seconds by the
worker, for whatever a restart or a failed send left."""

from __future__ import annotations

from collections.abc import Sequence

from campaigns.acknowledgements import claim_acknowledgements, mark_sent
from campaigns.context import Context
from campaigns.recipients import Addressee
from mailer.db import Database
from mailer.delivery.notices import Notices


class Acknowledger:
    def __init__(self, db: Database, ctx: Context, notices: Notices) -> None:
        self.db = db
        self.ctx = ctx
        self.notices = notices

    async def after_commit(self, addressee: Addressee) -> None:
        """The acknowledgement of this opt-out, now (a background task of the answer): it was
        stored claimed for this process, so it goes without another claim."""
        ack_id = addressee.acknowledgement
        if ack_id is not None and await self.notices.acknowledge(addressee):
            await self.db.transaction(lambda s: mark_sent(s, [ack_id], self.ctx.clock))

    async def send(self, ids: Sequence[int] | None = None) -> int:
        """Send these acknowledgements, or all that are due; how many went."""
        clock = self.ctx.clock
        claimed = await self.db.transaction(lambda s: claim_acknowledgements(s, clock, ids))
        sent = [
            ack_id
            for ack_id, email, name, locale in claimed
            if await self.notices.acknowledge(Addressee(email, name, locale))
        ]
        if sent:
            await self.db.transaction(lambda s: mark_sent(s, sent, clock))
        return len(sent)
