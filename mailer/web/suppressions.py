"""Admin API: look up and add suppression entries (objections by staff, C14)."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.params import FromQuery, JSONBody

from campaigns.suppression.entries import record_objection, suppression_status
from campaigns.suppression.inputs import SuppressionIn
from mailer.web.deps import CtxDep, DbDep
from mailer.web.errors import responses
from mailer.web.schemas import SuppressionStatusOut


class SuppressionController(Controller):
    path = "/api/v1/suppressions"
    tags = ["admin"]
    opt = {"scope": "admin"}

    @get(
        "/",
        summary="Is this address suppressed, why, since when",
        responses=responses(401, 403, 422),
    )
    async def lookup(self, email: FromQuery[str], db: DbDep, ctx: CtxDep) -> SuppressionStatusOut:
        status = await db.transaction(lambda s: suppression_status(s, email, ctx.hasher))
        return SuppressionStatusOut.model_validate(status, from_attributes=True)

    @post(
        "/",
        status_code=201,
        summary="Suppress an address (objection or manual entry); takes effect at once",
        responses=responses(401, 403, 413, 422),
    )
    async def add(
        self, data: JSONBody[SuppressionIn], db: DbDep, ctx: CtxDep
    ) -> SuppressionStatusOut:
        status = await db.transaction(
            lambda s: record_objection(s, data, clock=ctx.clock, hasher=ctx.hasher)
        )
        return SuppressionStatusOut.model_validate(status, from_attributes=True)
