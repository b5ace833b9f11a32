"""The console's campaign pages (issue 13): the editor with its live preview, the audience and
why, the test send, the schedule and its next firings, pause/resume/cancel, the progress while
a run sends, and a run's report. Every change is posted with the session's CSRF token and goes
to the audit log (C39). The live parts (preview, audience, firings, progress) are fragments the
page's script (static/console.js) loads; without script each is a link to the same fragment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiosmtplib
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from campaigns.audience.audience import (
    AudienceCounts,
    Explanation,
    Sample,
    audience_counts,
    audience_samples,
    explain_target,
)
from campaigns.audience.eligibility import CampaignTarget
from campaigns.clock import as_utc
from campaigns.context import Context
from campaigns.errors import Conflict, DomainError, InvalidInput, NotFound
from campaigns.evidence.profiles import find_contacts
from campaigns.models import Campaign
from campaigns.returns.reputation import Reputation, run_reputation
from campaigns.sending import lifecycle
from campaigns.sending.campaigns import (
    EDITABLE,
    CampaignView,
    RunProgress,
    RunView,
    campaign_runs,
    campaign_views,
    check_campaign,
    create_campaign,
    latest_run_id,
    run_progress,
    update_campaign,
)
from campaigns.sending.inputs import CampaignIn
from campaigns.sending.states import Action, may
from campaigns.staff import Staff, audit
from campaigns.tracking import CampaignClicks, campaign_clicks
from mailer.db import Database
from mailer.delivery.compose import Recipient
from mailer.delivery.preview import previewed_contact, sample_recipient
from mailer.web.console import (
    HEADERS,
    ConsoleDep,
    language_of,
    not_found_page,
    page,
    signed_in,
    staff_or_answer,
    to_login,
    words,
)
from mailer.web.console_env import ConsolePages
from mailer.web.deps import (
    ComposersDep,
    CronParserDep,
    CtxDep,
    DbDep,
    TemplatesDep,
    TransportDep,
)

DRAFT_ID = "0" * 32  # the target of an editor that has not been saved yet
FIRINGS_SHOWN = 5
# The preview is framed by the editor (same origin); the mail inside it loads nothing.
PREVIEW_HEADERS = {
    **HEADERS,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline';"
    " frame-ancestors 'self'",
}


def template_names(templates: Path) -> list[str]:
    """The campaign templates a marketer can pick: templates/email/NAME.html (the language
    variants NAME.fr.html ... are chosen per recipient)."""
    return sorted(p.name for p in templates.glob("*.html") if p.name.count(".") == 1)


def _draft(form: Any) -> dict[str, Any]:
    """The editor's fields as the domain's command takes them (validated by CampaignIn)."""
    categories = form.getall("categories", [])
    return {
        "name": str(form.get("name", "")).strip(),
        "purpose": str(form.get("purpose", "")),
        "categories": [str(c) for c in categories if c],
        "subject": str(form.get("subject", "")).strip(),
        "template": str(form.get("template", "")),
        "locale": str(form.get("locale", "")) or None,
    }


def _checked(draft: dict[str, Any]) -> CampaignIn:
    """The draft as a command, or InvalidInput naming the first field that is wrong."""
    try:
        return CampaignIn.model_validate(draft)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise InvalidInput(f"{field}: {first['msg']}", field=field) from exc


@dataclass(frozen=True)
class Editor:
    """What the editor form shows: the draft's values and the choices."""

    draft: dict[str, Any]
    purposes: list[str]
    categories: dict[str, str]  # name -> label
    templates: list[str]
    languages: list[str]
    editable: bool


def _editor(ctx: Context, templates: Path, draft: dict[str, Any], editable: bool) -> Editor:
    from campaigns.tracking import TRACKING_PURPOSE

    marketing = ctx.config.marketing
    return Editor(
        draft=draft,
        purposes=[p for p in marketing.purposes if p != TRACKING_PURPOSE],
        categories={name: name for name in sorted(ctx.config.categories.names)},
        templates=template_names(templates),
        languages=["nl", "fr", "en"],
        editable=editable,
    )


def _queries(draft: dict[str, Any], lang: str, campaign_id: str | None) -> dict[str, str]:
    """The preview's and the audience's URLs' queries for the draft as the page first shows
    it (the script follows the edits)."""
    tail = [("campaign", campaign_id)] if campaign_id else []
    target = [("purpose", draft["purpose"]), *(("categories", c) for c in draft["categories"])]
    fields = [(k, v or "") for k, v in draft.items() if k != "categories"]
    return {
        "preview_query": urlencode([*fields, *target[1:], ("lang", lang), *tail]),
        "audience_query": urlencode([*target, *tail]),
    }


def _stored_draft(view: CampaignView) -> dict[str, Any]:
    return {
        "name": view.name,
        "purpose": view.purpose,
        "categories": list(view.categories),
        "subject": view.subject,
        "template": view.template,
        "locale": view.locale,
    }


def next_firings(cron: str, timezone: str, now: datetime, count: int = FIRINGS_SHOWN) -> list[str]:
    """The next firings of a crontab line in its time zone, as the marketer reads them."""
    from mailer.scheduler import cron_trigger

    trigger = cron_trigger(cron, timezone)
    moments, previous, moment = [], None, now
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, moment)
        if fire is None:
            break
        moments.append(fire.strftime("%a %Y-%m-%d %H:%M %Z"))
        previous = moment = fire
    return moments


@dataclass(frozen=True)
class Preview:
    subject: str
    html: str
    text: str
    headers: list[tuple[str, str]]
    language: str
    as_whom: str  # the contact's address, or "" for the sample contact


def _preview_of(data: bytes, language: str, as_whom: str) -> Preview:
    message = message_from_bytes(data, policy=policy.default)
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    return Preview(
        subject=str(message["Subject"]),
        html=html.get_content() if html else "",
        text=text.get_content() if text else "",
        headers=[
            (name, str(value))
            for name, value in message.items()
            if not name.lower().startswith(("content-", "mime-"))
        ],
        language=language,
        as_whom=as_whom,
    )


async def _recipient(
    session: AsyncSession,
    target: CampaignTarget,
    ctx: Context,
    who: str,
    language: str,
    staff: Staff,
) -> tuple[Recipient, str]:
    """The recipient a preview is composed for: the contact found by address or customer
    number (with the basis it holds for this draft), else the sample contact in `language`."""
    if not who.strip():
        recipient = sample_recipient(ctx.config.sender.contact_email, language)
        return recipient, ""
    found = await find_contacts(session, who, limit=1)
    if not found:
        raise NotFound("no contact with this address or customer number")
    contact = found[0]
    why = await explain_target(session, contact.id, target, ctx)
    await audit(session, staff.user_id, "contact.preview", ctx.clock, "contact", contact.id)
    return previewed_contact(contact, why), contact.email


def _transient(campaign_id: str, data: CampaignIn) -> Campaign:
    """The draft as a campaign record that is never stored: what the composer takes."""
    return Campaign(
        id=campaign_id,
        name=data.name,
        purpose=data.purpose,
        subject=data.subject,
        template=data.template,
        locale=data.locale,
    )


@dataclass(frozen=True)
class AudienceView:
    counts: AudienceCounts
    samples: dict[str, list[Sample]]


@dataclass(frozen=True)
class RunReport:
    run: RunView
    reputation: Reputation
    clicks: CampaignClicks
    paused_reason: str | None


def _fragment(console: ConsolePages, request: Request[Any, Any, Any], template: str,
              **context: Any) -> Response[str]:  # fmt: skip
    lang = language_of(console, request)
    return Response(
        console.fragment(lang, template, **context),
        media_type=MediaType.HTML,
        headers=HEADERS,
    )


def _error_text(console: ConsolePages, request: Request[Any, Any, Any], exc: DomainError) -> str:
    return words(console, request)["not_valid"].format(detail=str(exc))


class ConsoleCampaigns(Controller):
    path = "/console"
    include_in_schema = False
    exception_handlers = {NotFound: not_found_page}

    # ---- the editor -----------------------------------------------------------------------

    @get("/campaigns/new")
    async def new(
        self,
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        console: ConsoleDep,
        templates: TemplatesDep,
    ) -> Response[Any]:
        staff = await signed_in(request, db, ctx)
        if staff is None:
            return to_login()
        draft: dict[str, Any] = {"name": "", "purpose": "", "categories": [], "subject": "",
                 "template": "", "locale": None}  # fmt: skip
        lang = language_of(console, request)
        return page(
            console, request, "editor.html", "new_campaign", staff=staff, campaign=None,
            editor=_editor(ctx, templates, draft, True), queries=_queries(draft, lang, None),
        )  # fmt: skip

    @post("/campaigns/new", status_code=303)
    async def create(
        self,
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        console: ConsoleDep,
        templates: TemplatesDep,
    ) -> Response[Any]:
        staff = await staff_or_answer(request, db, ctx, console, "new_campaign", form=True)
        if not isinstance(staff, Staff):
            return staff
        draft = _draft(await request.form())
        try:
            data = _checked(draft)

            async def work(session: AsyncSession) -> CampaignView:
                view = await create_campaign(session, data, ctx, templates)
                await audit(session, staff.user_id, "campaign.create", ctx.clock, "campaign",
                            view.id)  # fmt: skip
                return view

            view = await db.transaction(work)
        except DomainError as exc:
            lang = language_of(console, request)
            return page(
                console, request, "editor.html", "new_campaign", staff=staff, campaign=None,
                editor=_editor(ctx, templates, draft, True), status_code=422,
                error=_error_text(console, request, exc), queries=_queries(draft, lang, None),
            )  # fmt: skip
        return Redirect(path=f"/console/campaigns/{view.id}?saved=1", status_code=303)

    @get("/campaigns/{campaign_id:str}")
    async def campaign(
        self,
        campaign_id: FromPath[str],
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        console: ConsoleDep,
        templates: TemplatesDep,
    ) -> Response[Any]:
        staff = await signed_in(request, db, ctx)
        if staff is None:
            return to_login()
        return await self._campaign_page(request, db, ctx, console, templates, staff, campaign_id)

    async def _campaign_page(
        self,
        request: Request[Any, Any, Any],
        db: Database,
        ctx: Context,
        console: ConsolePages,
        templates: Path,
        staff: Staff,
        campaign_id: str,
        *,
        draft: dict[str, Any] | None = None,
        error: str | None = None,
        notice: str | None = None,
        status_code: int = 200,
    ) -> Response[Any]:
        w = words(console, request)
        who = request.query_params.get("why", "").strip()

        async def load(session: AsyncSession) -> dict[str, Any]:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None:
                raise NotFound("no campaign with this id")
            (view,) = await campaign_views(session, [campaign])
            runs = await campaign_runs(session, campaign_id, with_senders=False)
            why: tuple[str, Explanation | None] | None = None
            if who:
                found = await find_contacts(session, who, limit=1)
                target = CampaignTarget(campaign_id, view.purpose, view.categories)
                why = (who, None)
                if found:
                    why = (found[0].email, await explain_target(session, found[0].id, target, ctx))
                    await audit(session, staff.user_id, "contact.why", ctx.clock, "contact",
                                found[0].id)  # fmt: skip
            return {
                "view": view, "record": campaign, "runs": runs, "why": why,
                "following": await _following(
                    session, campaign, runs[0].id if runs else None, ctx
                ),
            }  # fmt: skip

        loaded = await db.transaction(load)
        view, record = loaded["view"], loaded["record"]
        now = ctx.clock.now()
        firings = next_firings(record.cron, record.timezone or "UTC", now) if record.cron else []
        if request.query_params.get("saved"):
            notice = notice or w["saved"]
        tested = [a for a in request.query_params.get("tested", "").split(",") if a]
        if tested:
            allowed = set(ctx.config.marketing.test_addresses)
            notice = notice or w["test_sent"].format(
                emails=", ".join(a for a in tested if a in allowed)
            )
        shown = draft or _stored_draft(view)
        lang = language_of(console, request)
        return page(
            console, request, "campaign.html", "campaign", staff=staff, c=view, record=record,
            editor=_editor(ctx, templates, shown, view.status in EDITABLE and not loaded["runs"]),
            queries=_queries(shown, lang, campaign_id),
            runs=loaded["runs"],
            progress=loaded["following"].progress, live=loaded["following"].live,
            why=loaded["why"], who=who,
            why_words=_why_words(w, loaded["why"][1]) if loaded["why"] and loaded["why"][1]
            else None,
            firings=firings, test_addresses=list(ctx.config.marketing.test_addresses),
            may={action.name.lower(): may(view.status, action) for action in Action},
            timezones=TIMEZONES, error=error, notice=notice, status_code=status_code,
        )  # fmt: skip

    @post("/campaigns/{campaign_id:str}", status_code=303)
    async def save(
        self,
        campaign_id: FromPath[str],
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        console: ConsoleDep,
        templates: TemplatesDep,
    ) -> Response[Any]:
        staff = await staff_or_answer(request, db, ctx, console, "campaign", form=True)
        if not isinstance(staff, Staff):
            return staff
        draft = _draft(await request.form())
        try:
            data = _checked(draft)

            async def work(session: AsyncSession) -> None:
                await update_campaign(session, campaign_id, data, ctx, templates)
                await audit(session, staff.user_id, "campaign.edit", ctx.clock, "campaign",
                            campaign_id)  # fmt: skip

            await db.transaction(work)
        except NotFound:
            raise
        except DomainError as exc:
            return await self._campaign_page(
                request, db, ctx, console, templates, staff, campaign_id, draft=draft,
                error=_error_text(console, request, exc), status_code=422,
            )  # fmt: skip
        return Redirect(path=f"/console/campaigns/{campaign_id}?saved=1", status_code=303)

    # ---- live fragments -------------------------------------------------------------------

    @get("/preview")
    async def preview(
        self,
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        console: ConsoleDep,
        composers: ComposersDep,
        templates: TemplatesDep,
    ) -> Response[Any]:
        """The exact message the draft makes, as a contact or the sample contact, in a chosen
        language: headers, subject, HTML and text. Its own small page (the editor frames it)."""
        staff = await signed_in(request, db, ctx)
        if staff is None:
            return to_login()
        query = request.query_params
        campaign_id = query.get("campaign") or DRAFT_ID
        language = query.get("lang", "") if query.get("lang", "") in ("nl", "fr", "en") else ""
        lang = language_of(console, request)
        try:
            data = _checked(_draft(query))
            check_campaign(data, ctx, templates)  # an unknown purpose, category or template
            target = CampaignTarget(campaign_id, data.purpose, tuple(data.categories))
            composer = composers.for_campaign(_transient(campaign_id, data))

            async def work(session: AsyncSession) -> Preview:
                recipient, as_whom = await _recipient(
                    session, target, ctx, query.get("as", ""), language or lang, staff
                )
                composed = composer.compose(recipient)
                return _preview_of(composed.data, recipient.locale or "", as_whom)

            shown: Preview | None = await db.transaction(work)
            error = None
        except DomainError as exc:
            shown, error = None, _error_text(console, request, exc)
        return Response(
            console.render(lang, "preview.html", "preview", preview=shown, error=error),
            media_type=MediaType.HTML,
            headers=PREVIEW_HEADERS,
        )

    @get("/audience")
    async def audience(
        self, request: Request[Any, Any, Any], db: DbDep, ctx: CtxDep, console: ConsoleDep
    ) -> Response[Any]:
        """The draft's audience by basis and by reason, with a few contacts of each and why:
        loaded after the page, since at a million contacts it takes a while."""
        staff = await signed_in(request, db, ctx)
        if staff is None:
            return to_login()
        query = request.query_params
        target = CampaignTarget(
            query.get("campaign") or DRAFT_ID,
            str(query.get("purpose", "")),
            tuple(c for c in query.getall("categories", []) if c),
        )
        w = words(console, request)
        if target.purpose not in ctx.config.marketing.purposes:
            return _fragment(console, request, "audience.html", view=None,
                             error=w["pick_purpose"])  # fmt: skip

        async def work(session: AsyncSession) -> AudienceView:
            return AudienceView(
                await audience_counts(session, target, ctx),
                await audience_samples(session, target, ctx),
            )

        view = await db.transaction(work)
        sentences = {
            group: [(s, _why_words(w, s.why)) for s in samples]
            for group, samples in view.samples.items()
        }
        return _fragment(console, request, "audience.html", view=view, sentences=sentences,
                         error=None)  # fmt: skip

    @get("/firings")
    async def firings(
        self, request: Request[Any, Any, Any], db: DbDep, ctx: CtxDep, console: ConsoleDep
    ) -> Response[Any]:
        """The next five firings of a crontab line in its time zone, as it is typed."""
        staff = await signed_in(request, db, ctx)
        if staff is None:
            return to_login()
        query = request.query_params
        cron, timezone = str(query.get("cron", "")).strip(), str(query.get("timezone", "UTC"))
        try:
            ZoneInfo(timezone)
            moments = next_firings(cron, timezone, ctx.clock.now()) if cron else []
            error = None
        except (ValueError, ZoneInfoNotFoundError, KeyError):
            moments, error = [], words(console, request)["bad_cron"]
        return _fragment(console, request, "firings.html", firings=moments, error=error)

    @get("/campaigns/{campaign_id:str}/progress")
    async def progress(
        self,
        campaign_id: FromPath[str],
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        console: ConsoleDep,
    ) -> Response[Any]:
        """The open run (else the latest) as it sends: done of total, rate, ETA, outcomes."""
        staff = await signed_in(request, db, ctx)
        if staff is None:
            return to_login()

        async def work(session: AsyncSession) -> Following:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None:
                raise NotFound("no campaign with this id")
            return await _following(
                session, campaign, await latest_run_id(session, campaign_id), ctx
            )

        following = await db.transaction(work)
        return _fragment(console, request, "progress.html", progress=following.progress,
                         live=following.live)  # fmt: skip

    # ---- actions --------------------------------------------------------------------------

    @post("/campaigns/{campaign_id:str}/test", status_code=303)
    async def test_send(
        self,
        campaign_id: FromPath[str],
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        console: ConsoleDep,
        templates: TemplatesDep,
        composers: ComposersDep,
        transport: TransportDep,
    ) -> Response[Any]:
        """The saved campaign to addresses of the internal test list only."""
        staff = await staff_or_answer(request, db, ctx, console, "campaign", form=True)
        if not isinstance(staff, Staff):
            return staff
        form = await request.form()
        allowed = list(ctx.config.marketing.test_addresses)
        chosen = [a for a in form.getall("to", []) if a in allowed]
        w = words(console, request)
        if not chosen:
            return await self._campaign_page(
                request, db, ctx, console, templates, staff, campaign_id,
                error=w["pick_test_address"], status_code=422,
            )  # fmt: skip

        async def load(session: AsyncSession) -> Campaign:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None:
                raise NotFound("no campaign with this id")
            await audit(session, staff.user_id, "campaign.test_send", ctx.clock, "campaign",
                        campaign_id)  # fmt: skip
            return campaign

        campaign = await db.transaction(load)
        composer = composers.for_campaign(campaign)
        try:
            for email in chosen:
                await transport.send(composer.compose(sample_recipient(email)))
        except (aiosmtplib.SMTPException, OSError) as exc:
            return await self._campaign_page(
                request, db, ctx, console, templates, staff, campaign_id, status_code=502,
                error=w["test_failed"].format(detail=type(exc).__name__),
            )  # fmt: skip
        # Redirected: a reload shows the page again, it does not send the test again.
        query = urlencode({"tested": ",".join(chosen)})
        return Redirect(path=f"/console/campaigns/{campaign_id}?{query}", status_code=303)

    @post("/campaigns/{campaign_id:str}/schedule", status_code=303)
    async def schedule(
        self,
        campaign_id: FromPath[str],
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        console: ConsoleDep,
        templates: TemplatesDep,
        parse_cron: CronParserDep,
    ) -> Response[Any]:
        """Now, once at a local time, or recurring (cron in a time zone)."""
        staff = await staff_or_answer(request, db, ctx, console, "campaign", form=True)
        if not isinstance(staff, Staff):
            return staff
        form = await request.form()
        mode = str(form.get("mode", ""))
        timezone = str(form.get("timezone", "Europe/Brussels"))
        send_at: datetime | None = None
        cron: str | None = None
        try:
            if mode == "now":
                send_at = ctx.clock.now()
            elif mode == "once":
                try:
                    local = datetime.fromisoformat(str(form.get("send_at", "")))
                    send_at = local.replace(tzinfo=ZoneInfo(timezone))
                except (ValueError, ZoneInfoNotFoundError) as exc:
                    raise InvalidInput("give a date and time", field="send_at") from exc
            elif mode == "cron":
                cron = str(form.get("cron", "")).strip()
            else:
                raise InvalidInput("choose now, once or recurring", field="mode")

            async def work(session: AsyncSession) -> None:
                await lifecycle.schedule(
                    session, campaign_id, send_at=send_at, cron=cron,
                    timezone=timezone if cron else None, parse_cron=parse_cron, ctx=ctx,
                )  # fmt: skip
                await audit(session, staff.user_id, f"campaign.schedule.{mode}", ctx.clock,
                            "campaign", campaign_id)  # fmt: skip

            await db.transaction(work, urgent=True)
        except NotFound:
            raise
        except DomainError as exc:
            return await self._campaign_page(
                request, db, ctx, console, templates, staff, campaign_id,
                error=_error_text(console, request, exc),
                status_code=409 if isinstance(exc, Conflict) else 422,
            )  # fmt: skip
        return Redirect(path=f"/console/campaigns/{campaign_id}", status_code=303)

    @post("/campaigns/{campaign_id:str}/{action:str}", status_code=303)
    async def change(
        self,
        campaign_id: FromPath[str],
        action: FromPath[str],
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        console: ConsoleDep,
        templates: TemplatesDep,
    ) -> Response[Any]:
        """Pause, resume or cancel."""
        staff = await staff_or_answer(request, db, ctx, console, "campaign", form=True)
        if not isinstance(staff, Staff):
            return staff
        step = {"pause": lifecycle.pause, "resume": lifecycle.resume,
                "cancel": lifecycle.cancel}.get(action)  # fmt: skip
        if step is None:
            raise NotFound("no such action")

        async def work(session: AsyncSession) -> None:
            await step(session, campaign_id, ctx=ctx)
            await audit(session, staff.user_id, f"campaign.{action}", ctx.clock, "campaign",
                        campaign_id)  # fmt: skip

        try:
            await db.transaction(work, urgent=True)  # before the run's next handoff
        except NotFound:
            raise
        except DomainError as exc:
            return await self._campaign_page(
                request, db, ctx, console, templates, staff, campaign_id,
                error=_error_text(console, request, exc), status_code=409,
            )  # fmt: skip
        return Redirect(path=f"/console/campaigns/{campaign_id}", status_code=303)

    # ---- after a run ----------------------------------------------------------------------

    @get("/campaigns/{campaign_id:str}/runs/{run_id:int}")
    async def report(
        self,
        campaign_id: FromPath[str],
        run_id: FromPath[int],
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        console: ConsoleDep,
    ) -> Response[Any]:
        """A run's report: outcomes, bounces and complaints per receiving domain,
        unsubscribes, clicks (aggregate, where tracking was consented), why it paused."""
        staff = await signed_in(request, db, ctx)
        if staff is None:
            return to_login()

        async def work(session: AsyncSession) -> tuple[CampaignView, RunReport]:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None:
                raise NotFound("no campaign with this id")
            (view,) = await campaign_views(session, [campaign])
            runs = {run.id: run for run in await campaign_runs(session, campaign_id)}
            if run_id not in runs:
                raise NotFound("no run with this id")
            return view, RunReport(
                runs[run_id],
                await run_reputation(session, run_id),
                await campaign_clicks(session, campaign_id),
                # Why it paused itself: said by the run still open, not by the earlier ones.
                campaign.paused_reason if runs[run_id].status == "sending" else None,
            )

        view, report = await db.transaction(work)
        return page(console, request, "report.html", "report", staff=staff, c=view,
                    report=report)  # fmt: skip


@dataclass(frozen=True)
class Following:
    """What the progress panel shows, and whether it keeps asking (a run sends, or one is
    due within the minute: the worker fires it within seconds)."""

    progress: RunProgress | None
    live: bool


SOON = timedelta(minutes=1)


async def _following(
    session: AsyncSession, campaign: Campaign, latest_run: int | None, ctx: Context
) -> Following:
    now = ctx.clock.now()
    shown = await run_progress(session, latest_run, now) if latest_run is not None else None
    due_soon = (
        campaign.status == "scheduled"
        and campaign.send_at is not None
        and now - SOON <= as_utc(campaign.send_at) <= now + SOON
    )
    return Following(shown, campaign.status == "sending" or due_soon)


def _why_words(w: dict[str, str], why: Explanation | None) -> str:
    """Why a contact gets (or not) the campaign, in the console's language."""
    if why is None:
        return w["no_match"]
    basis = why.basis
    if why.eligible and basis is not None:
        if basis.kind == "consent":
            return w["why_consent"].format(
                purpose=basis.purpose,
                date=f"{basis.captured_at:%Y-%m-%d}",
                wording=basis.wording_version,
            )
        return w["why_soft"].format(
            categories=", ".join(basis.categories or ()),
            date=f"{basis.placed_at:%Y-%m-%d}",
            order=basis.order_id,
            until=f"{basis.until:%Y-%m-%d}",
        )
    return w["why_not"].format(reason=w[f"reason_{why.reason}"])


# The time zones offered by the schedule form: the shop's own first.
TIMEZONES = ["Europe/Brussels", "Europe/Amsterdam", "Europe/Paris", "Europe/London", "UTC"]
