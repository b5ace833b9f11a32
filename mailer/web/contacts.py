"""Shop-backend API: contacts with orders and consent evidence; consents; reading contacts."""

from __future__ import annotations

from litestar import Controller, Request, Response, delete, get, post
from litestar.background_tasks import BackgroundTask
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.errors import DomainError, InvalidInput
from campaigns.evidence.contacts import IngestResult, check_contact, ingest_contacts
from campaigns.evidence.inputs import ConsentIn, ContactIn, SignupIn
from campaigns.evidence.profiles import ContactView, contact_detail, contact_view, record_consent
from campaigns.recipients import create_signup
from campaigns.rights.erasure import erase_contact
from mailer.web.auth import actor_of
from mailer.web.deps import CtxDep, DbDep, NoticesDep
from mailer.web.errors import pydantic_errors, responses, status_of
from mailer.web.schemas import (
    BatchItemOut,
    BatchOut,
    ConsentOut,
    ContactBatchIn,
    ContactDetailOut,
    ContactOut,
    RefusedOut,
    SignupOut,
)

_STATUS = {"created": 201, "updated": 200}


class ContactController(Controller):
    path = "/api/v1"
    tags = ["shop backend"]

    @post(
        "/contacts",
        opt={"scope": "shop"},
        status_code=201,
        summary="Create or update a contact with its orders and consent evidence",
        responses={
            200: ResponseSpec(ContactOut, description="An existing contact was updated"),
            **responses(401, 403, 409, 413, 422),
        },
    )
    async def push_contact(
        self, data: JSONBody[ContactIn], db: DbDep, ctx: CtxDep
    ) -> Response[ContactOut]:
        check_contact(data, ctx.config, ctx.clock.now())

        async def work(session: AsyncSession) -> tuple[IngestResult, ContactView]:
            (outcome,) = await ingest_contacts(session, [(0, data)], ctx)
            if outcome.error is not None:
                raise outcome.error
            assert outcome.contact_id is not None
            view = await contact_view(session, outcome.contact_id, ctx, outcome.refused)
            return outcome, view

        outcome, view = await db.transaction(work)
        return Response(
            ContactOut.model_validate(view, from_attributes=True),
            status_code=_STATUS[outcome.result],
        )

    @post(
        "/contacts/batch",
        opt={"scope": "shop"},
        status_code=207,
        summary="Create or update up to 1,000 contacts; each item succeeds or fails alone",
        responses=responses(401, 403, 413, 422),
    )
    async def push_batch(self, data: JSONBody[ContactBatchIn], db: DbDep, ctx: CtxDep) -> BatchOut:
        now = ctx.clock.now()
        results: dict[int, BatchItemOut] = {}
        accepted: list[tuple[int, ContactIn]] = []
        for index, raw in enumerate(data.contacts):
            try:
                item = ContactIn.model_validate(raw)
                check_contact(item, ctx.config, now)
            except ValidationError as exc:
                first = pydantic_errors(exc)[0]
                results[index] = BatchItemOut(
                    index=index,
                    status=422,
                    field=first["field"],
                    detail=f"{first['field'] or 'item'}: {first['message']}",
                )
                continue
            except InvalidInput as exc:
                results[index] = _failure(index, exc)
                continue
            accepted.append((index, item))

        if accepted:
            outcomes = await db.transaction(lambda session: ingest_contacts(session, accepted, ctx))
            for outcome in outcomes:
                results[outcome.index] = (
                    _failure(outcome.index, outcome.error)
                    if outcome.error is not None
                    else BatchItemOut(
                        index=outcome.index,
                        status=_STATUS[outcome.result],
                        id=outcome.contact_id,
                        refused=[RefusedOut(item=r.item, reason=r.reason) for r in outcome.refused],
                    )
                )
        return BatchOut(results=[results[i] for i in sorted(results)])

    @post(
        "/consents",
        opt={"scope": "shop"},
        status_code=201,
        summary="Record a consent grant or withdrawal for a known contact",
        responses={
            200: ResponseSpec(ConsentOut, description="This exact event was already recorded"),
            **responses(401, 403, 404, 413, 422),
        },
    )
    async def push_consent(
        self, data: JSONBody[ConsentIn], db: DbDep, ctx: CtxDep
    ) -> Response[ConsentOut]:
        result, created = await db.transaction(lambda session: record_consent(session, data, ctx))
        return Response(
            ConsentOut.model_validate(result, from_attributes=True),
            status_code=201 if created else 200,
        )

    @post(
        "/signups",
        opt={"scope": "shop"},
        status_code=202,
        summary="A web-form sign-up: sends the double opt-in mail; no basis until confirmed",
        responses=responses(401, 403, 413, 422),
    )
    async def signup(
        self, data: JSONBody[SignupIn], db: DbDep, ctx: CtxDep, notices: NoticesDep
    ) -> Response[SignupOut]:
        signup = await db.transaction(lambda session: create_signup(session, data, ctx))
        background = None
        if signup is not None:
            background = BackgroundTask(notices.confirm_signup, signup)
        # The same answer whether or not a mail goes out: no address enumeration.
        return Response(SignupOut(), status_code=202, background=background)

    @get(
        "/contacts/{contact_id:str}",
        opt={"scope": "marketer"},
        summary="A contact: profile, consent ledger, orders, bases and suppression status",
        responses=responses(401, 403, 404),
    )
    async def get_contact(
        self, contact_id: FromPath[str], db: DbDep, ctx: CtxDep
    ) -> ContactDetailOut:
        detail = await db.transaction(lambda session: contact_detail(session, contact_id, ctx))
        return ContactDetailOut.model_validate(detail, from_attributes=True)

    @delete(
        "/contacts/{contact_id:str}",
        status_code=204,
        opt={"scope": "admin"},
        tags=["admin"],
        summary="Erase the contact (C33): only the suppression hash stays, reason erasure",
        responses=responses(401, 403, 404),
    )
    async def erase(
        self,
        contact_id: FromPath[str],
        request: Request,  # type: ignore[type-arg]
        db: DbDep,
        ctx: CtxDep,
    ) -> Response[None]:
        actor = actor_of(request)
        await db.transaction(
            lambda s: erase_contact(s, contact_id, ctx=ctx, channel="api", actor=actor),
            urgent=True,
        )
        return Response(None, status_code=204)


def _failure(index: int, error: DomainError) -> BatchItemOut:
    return BatchItemOut(
        index=index, status=status_of(error), detail=error.message, field=error.field
    )
