"""Sends the acknowledgements of opt-outs (C15) from their outbox (campaigns/acknowledgements.py):
right after the objection's commit, by the process that took it, and every few seconds by the
worker, for whatever a restart or a failed send left."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from campaigns.acknowledgements import claim_acknowledgements, mark_sent
from campaigns.context import Context
from campaigns.objections import Addressee
from mailer.db import Database
from mailer.delivery.notices import Notices

CHUNK = 25  # acknowledgements per SMTP connection and per mark


class Acknowledger:
    def __init__(self, db: Database, ctx: Context, notices: Notices) -> None:
        self.db = db
        self.ctx = ctx
        self.notices = notices

    async def after_commit(self, addressees: Sequence[Addressee]) -> None:
        """The acknowledgements of these opt-outs, now: they were stored claimed for this
        process, so they go without another claim."""
        stored = [(a.acknowledgement, a) for a in addressees if a.acknowledgement is not None]
        await self._send_in_chunks(stored)

    async def _send_in_chunks(self, claimed: Sequence[tuple[int, Addressee]]) -> int:
        """A chunk over one connection, then marked sent: each chunk well inside the claim's
        lease (a later sender would take it again), and a crash resends one chunk at most."""
        went = 0
        for start in range(0, len(claimed), CHUNK):
            chunk = claimed[start : start + CHUNK]
            done = await self.notices.acknowledge([addressee for _, addressee in chunk])
            sent = [ack_id for (ack_id, _), ok in zip(chunk, done, strict=True) if ok]
            if sent:
                await self.db.transaction(partial(mark_sent, ids=sent, clock=self.ctx.clock))
            went += len(sent)
        return went

    async def send(self, ids: Sequence[int] | None = None) -> int:
        """Send these acknowledgements, or all that are due; how many went."""
        clock = self.ctx.clock
        claimed = await self.db.transaction(lambda s: claim_acknowledgements(s, clock, ids))
        return await self._send_in_chunks(
            [(ack_id, Addressee(email, name, locale)) for ack_id, email, name, locale in claimed]
        )
