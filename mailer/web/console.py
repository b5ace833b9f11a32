"""The marketers' console in the browser (C39): staff log in with their own account, every form
carries the session's CSRF token, and what staff do is in the audit log.

Server-rendered pages (templates/console/), nl/fr/en from the browser's Accept-Language, one
script of its own (static/console.js) and nothing from elsewhere. The session cookie is
HttpOnly and SameSite=Lax, Secure outside dev mode; the login form has its own CSRF cookie
(double submit), since there is no session yet.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from campaigns.audience.eligibility import Basis
from campaigns.errors import NotFound
from campaigns.evidence.profiles import contact_detail, find_contacts
from campaigns.models import Campaign
from campaigns.rights.erasure import erase_contact
from campaigns.sending.campaigns import DeliveryLine, campaign_count, deliveries_of, list_campaigns
from campaigns.staff import Staff, audit, audit_log, current_staff, log_in, log_out
from mailer.db import Database
from mailer.web.console_env import ConsolePages
from mailer.web.console_text import CONSOLE
from mailer.web.deps import CtxDep, DbDep

SESSION_COOKIE = "mailer_session"
PAGE_SIZE = 50  # campaigns per page of the list
LOGIN_COOKIE = "mailer_login_csrf"
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    # The console's own script and the preview it frames; nothing from elsewhere.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline';"
    " script-src 'self'; connect-src 'self'; frame-src 'self'; form-action 'self';"
    " frame-ancestors 'none'",
}


def page(
    console: ConsolePages,
    request: Request[Any, Any, Any],
    template: str,
    title_key: str,
    *,
    status_code: int = 200,
    cookies: list[Cookie] | None = None,
    **context: Any,
) -> Response[str]:
    lang = language_of(console, request)
    return Response(
        console.render(lang, template, title_key, **context),
        media_type=MediaType.HTML,
        status_code=status_code,
        headers=HEADERS,
        cookies=cookies or [],
    )


def refused(
    console: ConsolePages, request: Request[Any, Any, Any], staff: Staff, title: str, why: str
) -> Response[str]:
    """A 403 page that says why, in the staff member's language; nothing changed."""
    message = words(console, request)[why]
    return page(
        console, request, "message.html", title, staff=staff, status_code=403, message=message
    )


def _basis_in_words(w: dict[str, str], basis: Basis) -> str:
    """One basis as the contact page says it (the same facts as the API's `bases`)."""
    day = "%Y-%m-%d"
    if basis.kind == "consent":
        since = basis.since.strftime(day) if basis.since else "?"
        return w["consent_since"].format(
            purpose=basis.purpose, since=since, event=basis.consent_event_id
        )
    return w["soft_until"].format(
        categories=", ".join(basis.categories or ()),
        since=basis.since.strftime(day) if basis.since else "?",
        until=basis.until.strftime(day) if basis.until else "?",
        order=basis.order_id,
    )


def language_of(console: ConsolePages, request: Request[Any, Any, Any]) -> str:
    """nl, fr or en, from the browser's Accept-Language."""
    return console.language(request.headers.get("accept-language", ""))


def words(console: ConsolePages, request: Request[Any, Any, Any]) -> dict[str, str]:
    return CONSOLE[language_of(console, request)]


def _session_cookie(console: ConsolePages, token: str | None) -> Cookie:
    """The session's cookie, or (None) the one that ends it in the browser."""
    return Cookie(
        key=SESSION_COOKIE,
        value=token or "",
        path="/console",
        httponly=True,
        samesite="lax",
        secure=console.secure_cookies,
        max_age=None if token else 0,
    )


ConsoleDep = NamedDependency[ConsolePages]  # parameter `console`


@dataclass(frozen=True)
class CampaignRow:
    id: str
    name: str
    purpose: str
    status: str
    counts: Any
    next_firing: str | None


def _next_firing(campaign: Campaign, now: datetime) -> str | None:
    """When the campaign fires next, in its own time zone (UTC without one)."""
    from mailer.scheduler import next_firing  # APScheduler, loaded when first needed

    moment = next_firing(campaign, now)
    return None if moment is None else moment.strftime("%Y-%m-%d %H:%M %Z")


async def signed_in(request: Request[Any, Any, Any], db: Database, ctx: Any) -> Staff | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return await db.transaction(lambda s: current_staff(s, token, ctx.clock))


async def carries_token(request: Request[Any, Any, Any], expected: str) -> bool:
    """Whether the posted form carries this CSRF token (C39); none expected is never."""
    form = await request.form()
    return bool(expected) and secrets.compare_digest(str(form.get("csrf", "")), expected)


async def staff_or_answer(
    request: Request[Any, Any, Any],
    db: Database,
    ctx: Any,
    console: ConsolePages,
    title: str,
    *,
    form: bool = False,
    admin: bool = False,
) -> Staff | Response[Any]:
    """Who asks, or the answer that ends the request: the login page for nobody; 403 for a
    form posted without its CSRF token, or for a marketer where only admins may (C39)."""
    staff = await signed_in(request, db, ctx)
    if staff is None:
        return to_login()
    if form and not await carries_token(request, staff.csrf):
        return refused(console, request, staff, title, "forbidden")
    if admin and not staff.admin:
        return refused(console, request, staff, title, "admins_only")
    return staff


def not_found_page(request: Request[Any, Any, Any], exc: NotFound) -> Response[str]:
    """What the console answers for a campaign, run or contact that is not there: a page in
    the staff member's language, not the API's JSON."""
    console: ConsolePages = request.app.state.console
    message = words(console, request)["not_found"]
    return page(console, request, "message.html", "console", status_code=404, staff=None,
                message=message)  # fmt: skip


def to_login() -> Redirect:
    return Redirect(path="/console/login", status_code=303)


SCRIPT = (Path(__file__).parent / "static" / "console.js").read_bytes()


class ConsoleController(Controller):
    include_in_schema = False
    exception_handlers = {NotFound: not_found_page}

    @get("/console/static/console.js", media_type="text/javascript")
    async def script(self) -> Response[bytes]:
        """The console's one script, served by the service itself (no CDN)."""
        return Response(
            SCRIPT,
            media_type="text/javascript",
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    @get("/", status_code=303)
    async def root(self) -> Redirect:
        return Redirect(path="/console/", status_code=303)

    @get("/console/")
    async def campaigns(
        self, request: Request[Any, Any, Any], db: DbDep, ctx: CtxDep, console: ConsoleDep
    ) -> Response[Any]:
        staff = await signed_in(request, db, ctx)
        if staff is None:
            return to_login()

        try:
            number = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            number = 1

        async def load(session: AsyncSession) -> tuple[list[CampaignRow], int]:
            total = await campaign_count(session)
            last = max(1, -(-total // PAGE_SIZE))
            views = await list_campaigns(session, PAGE_SIZE, (min(number, last) - 1) * PAGE_SIZE)
            ids = [v.id for v in views]
            shown = sa.select(Campaign).where(col(Campaign.id).in_(ids))
            schedules = {c.id: c for c in (await session.execute(shown)).scalars()}
            now = ctx.clock.now()
            rows = [
                CampaignRow(
                    v.id, v.name, v.purpose, v.status, v.counts, _next_firing(schedules[v.id], now)
                )
                for v in views
            ]
            return rows, total

        rows, total = await db.transaction(load)
        pages = max(1, -(-total // PAGE_SIZE))
        return page(
            console, request, "campaigns.html", "campaigns", staff=staff, campaigns=rows,
            total=total, number=min(number, pages), pages=pages, page_size=PAGE_SIZE,
        )  # fmt: skip

    @get("/console/login")
    async def login_page(
        self, request: Request[Any, Any, Any], console: ConsoleDep
    ) -> Response[str]:
        return self._login_form(request, console)

    def _login_form(
        self,
        request: Request[Any, Any, Any],
        console: ConsolePages,
        *,
        error: str | None = None,
        email: str = "",
        status_code: int = 200,
    ) -> Response[str]:
        token = secrets.token_urlsafe(32)
        cookie = Cookie(
            key=LOGIN_COOKIE,
            value=token,
            path="/console/login",
            httponly=True,
            samesite="strict",
            secure=console.secure_cookies,
        )
        return page(
            console,
            request,
            "login.html",
            "login_title",
            status_code=status_code,
            cookies=[cookie],
            csrf=token,
            error=error,
            email=email,
        )

    @post("/console/login", status_code=303)
    async def login(
        self, request: Request[Any, Any, Any], db: DbDep, ctx: CtxDep, console: ConsoleDep
    ) -> Response[Any]:
        w = words(console, request)
        if not await carries_token(request, request.cookies.get(LOGIN_COOKIE, "")):
            return self._login_form(request, console, error=w["forbidden"], status_code=403)
        form = await request.form()  # read once per request (Litestar caches it)
        email, password = str(form.get("email", "")), str(form.get("password", ""))
        result = await db.transaction(lambda s: log_in(s, email, password, ctx.clock))
        if not result.ok:
            if result.wait_seconds:
                error = w["wait"].format(seconds=result.wait_seconds)
                return self._login_form(request, console, error=error, email=email, status_code=429)
            return self._login_form(
                request, console, error=w["wrong_login"], email=email, status_code=401
            )
        assert result.token is not None
        return Redirect(
            path="/console/", status_code=303, cookies=[_session_cookie(console, result.token)]
        )

    @post("/console/logout", status_code=303)
    async def logout(
        self, request: Request[Any, Any, Any], db: DbDep, ctx: CtxDep, console: ConsoleDep
    ) -> Response[Any]:
        staff = await staff_or_answer(request, db, ctx, console, "console", form=True)
        if not isinstance(staff, Staff):
            return staff
        token = request.cookies[SESSION_COOKIE]
        await db.transaction(lambda s: log_out(s, token, ctx.clock))
        return Redirect(
            path="/console/login", status_code=303, cookies=[_session_cookie(console, None)]
        )

    @get("/console/contacts")
    async def contacts(
        self, request: Request[Any, Any, Any], db: DbDep, ctx: CtxDep, console: ConsoleDep
    ) -> Response[Any]:
        staff = await signed_in(request, db, ctx)
        if staff is None:
            return to_login()
        q = request.query_params.get("q", "")
        found = await db.transaction(lambda s: find_contacts(s, q))
        notice = words(console, request)["erased"] if request.query_params.get("erased") else None
        return page(
            console, request, "contacts.html", "contacts", staff=staff, q=q, found=found,
            notice=notice,
        )  # fmt: skip

    @get("/console/contacts/{contact_id:str}")
    async def contact(
        self,
        contact_id: FromPath[str],
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        console: ConsoleDep,
    ) -> Response[Any]:
        staff = await signed_in(request, db, ctx)
        if staff is None:
            return to_login()

        async def load(session: AsyncSession) -> tuple[Any, list[DeliveryLine]]:
            detail = await contact_detail(session, contact_id, ctx)
            # Reading a person's data is an action on it too (C39): who looked, and when.
            await audit(session, staff.user_id, "contact.view", ctx.clock, "contact", contact_id)
            return detail, await deliveries_of(session, contact_id)

        detail, deliveries = await db.transaction(load)
        w = words(console, request)
        return page(
            console, request, "contact.html", "contacts", staff=staff, c=detail,
            bases=[_basis_in_words(w, basis) for basis in detail.bases], deliveries=deliveries,
        )  # fmt: skip

    @post("/console/contacts/{contact_id:str}/erase", status_code=303)
    async def erase(
        self,
        contact_id: FromPath[str],
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        console: ConsoleDep,
    ) -> Response[Any]:
        """Admins only (C39): a marketer cannot erase, whatever it posts."""
        staff = await staff_or_answer(request, db, ctx, console, "contacts", form=True, admin=True)
        if not isinstance(staff, Staff):
            return staff

        async def work(session: AsyncSession) -> None:
            await erase_contact(
                session, contact_id, ctx=ctx, channel="console", actor=f"staff:{staff.user_id}"
            )
            await audit(session, staff.user_id, "contact.erase", ctx.clock, "contact", contact_id)

        await db.transaction(work, urgent=True)
        return Redirect(path="/console/contacts?erased=1", status_code=303)

    @get("/console/audit")
    async def audit(
        self, request: Request[Any, Any, Any], db: DbDep, ctx: CtxDep, console: ConsoleDep
    ) -> Response[Any]:
        staff = await staff_or_answer(request, db, ctx, console, "audit", admin=True)
        if not isinstance(staff, Staff):
            return staff
        lines = await db.transaction(audit_log)
        return page(console, request, "audit.html", "audit", staff=staff, lines=lines)
