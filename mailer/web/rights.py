"""People's rights over the API (admin): the access document (C32) and the record of
processing (art. 30). Erasure (C33) is `DELETE /api/v1/contacts/{id}`, on the contact's own
route (mailer/web/contacts.py)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from campaigns.rights.export import export_contact
from campaigns.rights.record import RelayInfo, processing_record
from mailer.web.auth import actor_of
from mailer.web.deps import CtxDep, DbDep
from mailer.web.errors import responses


class RightsController(Controller):
    path = "/api/v1/contacts"
    tags = ["admin"]
    opt = {"scope": "admin"}

    @get(
        "/{contact_id:str}/export",
        summary="The contact's access and portability document (C32), JSON, versioned",
        description="Everything held about the person, walked from the registry of personal"
        " data (campaigns/rights/registry.py); the request itself is logged (C38).",
        responses=responses(401, 403, 404),
    )
    async def export(
        self,
        contact_id: FromPath[str],
        request: Request,  # type: ignore[type-arg]
        db: DbDep,
        ctx: CtxDep,
    ) -> dict[str, Any]:
        actor = actor_of(request)
        return await db.transaction(
            lambda s: export_contact(
                s, contact_id, clock=ctx.clock, hasher=ctx.hasher, channel="api", actor=actor
            )
        )


@get(
    "/api/v1/processing-record",
    opt={"scope": "admin"},
    tags=["admin"],
    summary="The record of processing (GDPR art. 30), generated from the configuration",
    description="Controller, purposes and their legal bases, categories of data and of people,"
    " the relay as recipient, transfers, retention periods, security measures.",
    responses=responses(401, 403),
)
async def get_processing_record(ctx: CtxDep, relay: NamedDependency[RelayInfo]) -> dict[str, Any]:
    return processing_record(ctx.config, relay)
