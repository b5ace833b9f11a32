"""The console's pages about people (issue 13): the suppression search (reason, channel and
date only, C39), a manual suppression and a contact's export (admins), and the review queue of
bounces and complaints the machine would not decide (decisions by admins). Every change and
every export goes to the audit log."""

from __future__ import annotations

import json
from typing import Any, get_args

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.errors import DomainError, NotFound
from campaigns.returns.review import Action, ReviewItem, decide_review, review_items
from campaigns.rights.export import export_contact
from campaigns.staff import Staff, audit
from campaigns.suppression.entries import SuppressionStatus, record_objection, suppression_status
from campaigns.suppression.inputs import SuppressionIn
from mailer.web.console import ConsoleDep, not_found_page, page, refused, staff_or_answer, words
from mailer.web.deps import CtxDep, DbDep

REVIEW_SHOWN = 100


class ConsolePeople(Controller):
    path = "/console"
    include_in_schema = False
    exception_handlers = {NotFound: not_found_page}

    @get("/suppressions")
    async def suppressions(
        self, request: Request[Any, Any, Any], db: DbDep, ctx: CtxDep, console: ConsoleDep
    ) -> Response[Any]:
        """Is this address suppressed? Its entries' reason, channel and date, nothing more.
        Admins only, as the API's suppression lookup."""
        staff = await staff_or_answer(request, db, ctx, console, "suppressions", admin=True)
        if not isinstance(staff, Staff):
            return staff
        q = request.query_params.get("q", "").strip()
        found: SuppressionStatus | None = None
        error = None
        if q:
            try:
                found = await db.transaction(lambda s: suppression_status(s, q, ctx.hasher))
            except DomainError as exc:
                error = words(console, request)["not_valid"].format(detail=str(exc))
        notice = words(console, request)["suppressed_now"] if request.query_params.get("added") \
            else None  # fmt: skip
        return page(
            console, request, "suppressions.html", "suppressions", staff=staff, q=q,
            found=found, error=error, notice=notice,
            status_code=422 if error else 200,
        )  # fmt: skip

    @post("/suppressions", status_code=303)
    async def add_suppression(
        self, request: Request[Any, Any, Any], db: DbDep, ctx: CtxDep, console: ConsoleDep
    ) -> Response[Any]:
        """A manual suppression, admins only: the address is not mailed from now on (C14)."""
        staff = await staff_or_answer(
            request, db, ctx, console, "suppressions", form=True, admin=True
        )
        if not isinstance(staff, Staff):
            return staff
        form = await request.form()
        try:
            data = SuppressionIn(
                email=str(form.get("email", "")),
                reason="manual",
                channel="console",
                note=str(form.get("note", "")).strip() or None,
            )
        except ValidationError as exc:
            detail = exc.errors()[0]["msg"]
            return page(
                console, request, "suppressions.html", "suppressions", staff=staff, q="",
                found=None, notice=None, status_code=422,
                error=words(console, request)["not_valid"].format(detail=detail),
            )  # fmt: skip

        async def work(session: AsyncSession) -> None:
            status = await record_objection(session, data, clock=ctx.clock, hasher=ctx.hasher)
            entry = status.entries[-1].id  # the entry just added: the log names no address
            await audit(session, staff.user_id, "suppression.add", ctx.clock, "suppression", entry)

        await db.transaction(work, urgent=True)  # before any send's next handoff
        return Redirect(path="/console/suppressions?added=1", status_code=303)

    @post("/contacts/{contact_id:str}/export", status_code=200)
    async def export(
        self,
        contact_id: FromPath[str],
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        console: ConsoleDep,
    ) -> Response[Any]:
        """Everything held about the person, as the access request's JSON, admins only."""
        staff = await staff_or_answer(request, db, ctx, console, "contacts", form=True, admin=True)
        if not isinstance(staff, Staff):
            return staff

        async def work(session: AsyncSession) -> dict[str, Any]:
            document = await export_contact(
                session, contact_id, clock=ctx.clock, hasher=ctx.hasher, channel="console",
                actor=f"staff:{staff.user_id}",
            )  # fmt: skip
            await audit(session, staff.user_id, "contact.export", ctx.clock, "contact", contact_id)
            return document

        document = await db.transaction(work)
        return Response(
            json.dumps(document, ensure_ascii=False, indent=2, default=str).encode(),
            media_type="application/json",
            headers={
                "Content-Disposition": f'attachment; filename="contact-{contact_id}.json"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @get("/review")
    async def review(
        self, request: Request[Any, Any, Any], db: DbDep, ctx: CtxDep, console: ConsoleDep
    ) -> Response[Any]:
        """Bounces and complaints the decision table left to a person: the reports as they
        came hold addresses, so admins only, as the API's review queue."""
        staff = await staff_or_answer(request, db, ctx, console, "review", admin=True)
        if not isinstance(staff, Staff):
            return staff
        items: list[ReviewItem] = await db.transaction(
            lambda s: review_items(s, limit=REVIEW_SHOWN)
        )
        return page(
            console, request, "review.html", "review", staff=staff, items=items,
            actions=get_args(Action),
        )  # fmt: skip

    @post("/review/{item_id:int}", status_code=303)
    async def decide(
        self,
        item_id: FromPath[int],
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        console: ConsoleDep,
    ) -> Response[Any]:
        staff = await staff_or_answer(request, db, ctx, console, "review", form=True, admin=True)
        if not isinstance(staff, Staff):
            return staff
        form = await request.form()
        action = str(form.get("action", ""))
        if action not in get_args(Action):
            return refused(console, request, staff, "review", "forbidden")

        async def work(session: AsyncSession) -> None:
            await decide_review(
                session, item_id, action,  # type: ignore[arg-type]
                note=str(form.get("note", "")) or None, actor=f"staff:{staff.user_id}", ctx=ctx,
            )  # fmt: skip
            await audit(session, staff.user_id, f"review.{action}", ctx.clock, "review",
                        str(item_id))  # fmt: skip

        try:
            await db.transaction(work, urgent=True)
        except DomainError as exc:  # decided meanwhile (two admins, a double click)
            items: list[ReviewItem] = await db.transaction(
                lambda s: review_items(s, limit=REVIEW_SHOWN)
            )
            return page(
                console, request, "review.html", "review", staff=staff, items=items,
                actions=get_args(Action), status_code=409,
                error=words(console, request)["not_valid"].format(detail=str(exc)),
            )  # fmt: skip
        return Redirect(path="/console/review", status_code=303)
