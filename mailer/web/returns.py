"""The return channel over HTTP: a relay's bounce and complaint events, and the review queue."""

from __future__ import annotations

import logging
from functools import partial
from typing import Annotated, Literal

from litestar import Controller, Request, get, post
from litestar.params import FromQuery, JSONBody, Parameter, QueryParameter

from campaigns.returns.inputs import RelayEventIn
from campaigns.returns.intake import Outcome, record_relay_event
from campaigns.returns.providers import read_ses
from campaigns.returns.review import decide_review, review_items
from mailer.web.auth import actor_of
from mailer.web.deps import CtxDep, DbDep, SignerDep
from mailer.web.errors import responses
from mailer.web.schemas import (
    RelayEventOut,
    ReviewDecisionIn,
    ReviewItemOut,
    SesNotificationOut,
)

log = logging.getLogger("mailer.returns")


class RelayEvents(Controller):
    path = "/api/v1/bounces"
    tags = ["relay"]
    opt = {"scope": "relay"}

    @post(
        "/",
        status_code=202,
        summary="A relay's event about a message: hard or soft bounce, complaint, delivery",
        description="Decided by the same table as mailed reports (RULES.md C17-C19); the same"
        " event (message, type, timestamp) again changes nothing.",
        responses=responses(401, 403, 413, 422),
    )
    async def event(
        self, data: JSONBody[RelayEventIn], db: DbDep, ctx: CtxDep, signer: SignerDep
    ) -> RelayEventOut:
        outcome = await db.transaction(
            lambda s: record_relay_event(s, data, ctx=ctx, signer=signer), urgent=True
        )
        return _event_out(outcome)

    @post(
        "/ses",
        status_code=202,
        summary="Amazon SES notifications (bounce, complaint, delivery, delay), as SNS posts them",
        description="The SNS envelope or the bare SES notification, JSON in any content type"
        " (SNS sends text/plain); SNS authenticates with HTTP Basic, the key as password. Each"
        " event is decided as a relay event; a subscription confirmation is logged with the URL"
        " to open once.",
        responses=responses(401, 403, 413, 422),
    )
    async def ses(
        self,
        request: Request,  # type: ignore[type-arg]
        db: DbDep,
        ctx: CtxDep,
        signer: SignerDep,
    ) -> SesNotificationOut:
        notice = read_ses(await request.body())
        if notice.subscribe_url:
            log.warning("SNS subscription to confirm: open %s", notice.subscribe_url[:500])
        outcomes = []
        for event in notice.events:
            outcome = await db.transaction(
                partial(record_relay_event, event=event, ctx=ctx, signer=signer), urgent=True
            )
            outcomes.append(_event_out(outcome))
        return SesNotificationOut(
            accepted=True,
            events=outcomes,
            ignored=notice.ignored,
            subscription_to_confirm=notice.subscribe_url is not None,
        )


def _event_out(outcome: Outcome | None) -> RelayEventOut:
    if outcome is None:
        return RelayEventOut(accepted=True, duplicate=True, verdict=None, suppressed=None)
    return RelayEventOut(
        accepted=True, duplicate=False, verdict=outcome.verdict, suppressed=outcome.suppressed
    )


MAX_ID = 2**63 - 1  # a 64-bit id: a larger number names nothing (and would overflow a query)


class ReviewQueue(Controller):
    path = "/api/v1/review"
    tags = ["admin"]
    opt = {"scope": "admin"}

    @get(
        "/",
        summary="Reports that mapped to no delivery or could not be read (C20)",
        responses=responses(401, 403, 422),
    )
    async def list_items(
        self,
        db: DbDep,
        kind: FromQuery[Literal["bounce", "complaint", "unsubscribe", "other"] | None] = None,
        # `state` is Litestar's own parameter name: the query's `state` arrives as `wanted`.
        wanted: Annotated[
            Literal["open", "resolved", "dismissed"], QueryParameter(name="state")
        ] = "open",
    ) -> list[ReviewItemOut]:
        items = await db.transaction(lambda s: review_items(s, kind=kind, state=wanted))
        return [ReviewItemOut.model_validate(item, from_attributes=True) for item in items]

    @post(
        "/{item_id:int}",
        status_code=200,
        summary="Decide a report: suppress as hard bounce or complaint, or dismiss",
        responses=responses(401, 403, 404, 422),
    )
    async def decide(
        self,
        item_id: Annotated[int, Parameter(ge=1, le=MAX_ID, description="the item's id")],
        data: JSONBody[ReviewDecisionIn],
        request: Request,  # type: ignore[type-arg]
        db: DbDep,
        ctx: CtxDep,
    ) -> ReviewItemOut:
        actor = actor_of(request)
        item = await db.transaction(
            lambda s: decide_review(s, item_id, data.action, note=data.note, actor=actor, ctx=ctx)
        )
        return ReviewItemOut.model_validate(item, from_attributes=True)
