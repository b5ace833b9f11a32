"""Takes the objections of the hot paths (one-click, mailto) and follows them up
(campaigns/objections.py): the entry committed before the answer; the rest, and the
acknowledgement, right after, by the process that took them, and every few seconds by the
worker, for whatever a restart left (an entry stays due until followed up)."""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError

from campaigns.context import Context
from campaigns.objections import (
    BATCH,
    ONE_CLICK_PG,
    Taken,
    follow_up_objections,
    object_to_delivery,
    one_click_pg_params,
)
from mailer.db import Database
from mailer.delivery.acknowledger import Acknowledger

log = logging.getLogger(__name__)


class Objections:
    """One per process: a burst of one-click calls, each asking for a follow-up after its
    answer, becomes a few batches run one after another, not one transaction per call."""

    def __init__(self, db: Database, ctx: Context, acknowledger: Acknowledger) -> None:
        self.db = db
        self.ctx = ctx
        self.acknowledger = acknowledger
        self._running = False
        self._asked_again = False

    async def take(self, delivery_id: int, *, channel: str) -> Taken | None:
        """The objection of the person a delivery went to, committed when this returns (C13);
        None for an unknown delivery. On PostgreSQL one statement that commits by itself."""
        if self.db.engine.dialect.name == "postgresql":
            params = one_click_pg_params(delivery_id, channel=channel, ctx=self.ctx)

            try:
                rows = await self.db.statement(ONE_CLICK_PG, [params])
            except DBAPIError as exc:  # a deadlock with a follow-up: the retrying way below
                log.info("one-click statement failed, taken again: %s", type(exc).__name__)
            else:
                if not rows:
                    return None
                (row,) = rows
                if row.hashed:
                    return Taken(row.locale, row.added > 0)
        return await self.db.transaction(
            lambda s: object_to_delivery(s, delivery_id, channel=channel, ctx=self.ctx),
            urgent=True,  # before the answer, also while a campaign is sending (C13)
        )

    async def after_answer(self) -> None:
        """A background task of an answer that took an objection. If a follow-up is running
        in this process already, it takes this one too (its next batch)."""
        if self._running:
            self._asked_again = True
            return
        self._running = True
        try:
            await self.follow_up()
        except Exception as exc:  # the entries stay due: the worker follows them up
            log.warning("objection follow-up left to the worker: %s", type(exc).__name__)
        finally:
            self._running = False

    async def follow_up(self) -> int:
        """Follow up every objection due, in batches, and send their acknowledgements; how
        many were followed up."""
        done = 0
        while True:
            self._asked_again = False
            followed = await self.db.transaction(
                lambda s: follow_up_objections(s, self.ctx), urgent=True
            )
            await self.acknowledger.after_commit(followed.to_acknowledge)
            done += followed.entries
            if followed.entries < BATCH and not self._asked_again:
                return done

    async def left_over(self) -> int:
        """The worker's round: objections and acknowledgements that the process which took
        them left (a restart, a relay down). How many acknowledgements went."""
        try:
            await self.follow_up()
        except Exception as exc:  # the acknowledgements already due still go
            log.warning("objection follow-up failed: %s", type(exc).__name__)
        return await self.acknowledger.send()
