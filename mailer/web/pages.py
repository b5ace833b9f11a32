"""Recipient pages: unsubscribe (RFC 8058 one-click and a page), preferences with the person's
own data rights (their data by mail, erasure: C38), double opt-in.

No key, cookie, login or CSRF token: the signed token in the path is the credential. A GET
never changes anything (link scanners fetch links, C27). A forged, tampered or unknown token
changes nothing and gets the same answer as a valid one (C28). Nothing here redirects.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.params import FromPath

from campaigns.config import CategoryNames
from campaigns.context import Context
from campaigns.errors import NotFound
from campaigns.objections import Addressee
from campaigns.recipients import (
    Preferences,
    change_preferences,
    confirm_signup,
    locale_of_delivery,
    preferences,
    signup_addressee,
)
from campaigns.rights.erasure import erase_contact
from campaigns.rights.export import export_for_the_person
from campaigns.tokens import Kind, TokenSigner
from mailer.db import Database
from mailer.delivery.acknowledger import Acknowledger
from mailer.delivery.footer import TEXT as FOOTER_TEXT
from mailer.delivery.footer import language
from mailer.delivery.objections import Objections
from mailer.metrics import ONE_CLICK_SECONDS
from mailer.web.deps import (
    AcknowledgerDep,
    CtxDep,
    DbDep,
    NoticesDep,
    PagesDep,
    SignerDep,
)
from mailer.web.pages_env import Pages

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


def render(pages: Pages, locale: str | None, **context: Any) -> Response[str]:
    html = pages.html(locale, **context)
    return Response(html, media_type=MediaType.HTML, status_code=200, headers=HEADERS)


def acknowledge(acknowledger: Acknowledger, addressee: Addressee | None) -> BackgroundTask | None:
    """The opt-out's acknowledgement (C15), sent after the commit; stored with the objection,
    so a worker sends it if this process stops first."""
    return None if addressee is None else BackgroundTask(acknowledger.after_commit, [addressee])


def _one_button(pages: Pages, locale: str | None, what: str, action: str) -> Response[str]:
    """A page that asks, and a button that POSTs what it asks (a GET changes nothing: link
    scanners fetch links, C27): its words are `<what>_title`, `<what>_ask`, `<what>_button`."""
    w = pages.words(locale)
    return render(
        pages,
        locale,
        title=w[f"{what}_title"],
        paragraphs=[w[f"{what}_ask"]],
        form=what,
        action=action,
        button=w[f"{what}_button"],
    )


def _invalid(pages: Pages) -> Response[str]:
    w = pages.words(None)
    return render(pages, None, title=w["invalid_title"], paragraphs=[w["invalid_text"]])


async def _the_person(
    db: Database, ctx: Context, signer: TokenSigner, token: str
) -> Preferences | None:
    """Whose preference link this is, and their choices; None for a link that names nobody."""
    contact_id = signer.read_hex(Kind.PREFERENCES, token)
    if contact_id is None:
        return None
    return await db.transaction(lambda s: preferences(s, contact_id, ctx))


def _day(locale: str, when: datetime) -> str:
    return when.strftime(FOOTER_TEXT[locale]["date"])  # type: ignore[arg-type]


def _purposes_in_words(
    w: dict[str, str], locale: str, current: Preferences
) -> list[dict[str, Any]]:
    """Each purpose with its switch, and for a consent held now the day it was given (C38)."""
    since = {b.purpose: b.since for b in current.bases if b.kind == "consent" and b.since}
    return [
        {
            "purpose": purpose,
            "label": w.get(purpose, purpose),
            "on": on,
            "since": w["consent_since"].format(date=_day(locale, since[purpose]))
            if on and purpose in since
            else None,
        }
        for purpose, on in current.purposes.items()
    ]


def _customer_in_words(
    w: dict[str, str], locale: str, current: Preferences, names: CategoryNames
) -> dict[str, Any] | None:
    """The customer exception, per order it stands on, with one switch to end it alone
    (C38); or the day it was ended. None when the person is not mailed under it."""
    if current.soft_opt_in_ended_at is not None:
        ended = w["customer_ended"].format(date=_day(locale, current.soft_opt_in_ended_at))
        return {"legend": w["customer_legend"], "sentences": [ended], "switch": None}
    bases = current.customer_bases
    if not bases:
        return None
    sentences = [
        w["customer_basis"].format(
            categories=w["and"].join(names.of(c, locale) for c in basis.categories or ()),
            date=_day(locale, basis.since),
            until=_day(locale, basis.until),
        )
        for basis in bases
        if basis.since is not None and basis.until is not None
    ]
    return {"legend": w["customer_legend"], "sentences": sentences, "switch": w["customer_keep"]}


def _data_actions(w: dict[str, str], token: str) -> dict[str, str]:
    """The person's own rights under the preferences (C38): their data by mail, erasure."""
    return {
        "legend": w["data_legend"],
        "text": w["data_text"],
        "export_action": f"/p/{token}/export",
        "export_button": w["export_button"],
        "erase_action": f"/p/{token}/erase",
        "erase_link": w["erase_link"],
    }


@dataclass(frozen=True)
class OneClickParts:
    """What the one-click handler uses, as one dependency: Litestar resolves several in a task
    group per request, which was a fifth of the CPU of a burst of one-click calls. Its answer
    is the same page for everyone of a language: rendered once."""

    signer: TokenSigner
    pages: Pages
    objections: Objections
    answers: dict[str, str] = field(default_factory=dict)  # language -> the page

    def answer(self, locale: str | None) -> Response[str]:
        lang = language(locale, self.pages.sender.default_locale)
        if lang not in self.answers:
            w = self.pages.words(lang)
            self.answers[lang] = self.pages.html(
                lang, title=w["unsubscribed_title"], paragraphs=[w["unsubscribed_text"]]
            )
        return Response(
            self.answers[lang], media_type=MediaType.HTML, status_code=200, headers=HEADERS
        )


class RecipientPages(Controller):
    tags = ["recipients"]

    @get("/u/{token:str}", summary="Unsubscribe page: a button that POSTs; changes nothing")
    async def unsubscribe_page(
        self,
        token: FromPath[str],
        db: DbDep,
        signer: SignerDep,
        pages: PagesDep,
    ) -> Response[str]:
        delivery_id = signer.read_delivery(Kind.UNSUBSCRIBE, token)
        locale = None
        if delivery_id is not None:
            locale = await db.transaction(lambda s: locale_of_delivery(s, delivery_id))
        return _one_button(pages, locale, "unsubscribe", f"/u/{token}")

    @post(
        "/u/{token:str}",
        status_code=200,
        summary="One-click unsubscribe (RFC 8058) and the page's button",
        description="Accepts `List-Unsubscribe=One-Click` as application/x-www-form-urlencoded"
        " or multipart/form-data. The suppression is committed before the answer.",
    )
    async def unsubscribe(
        self,
        token: FromPath[str],
        request: Request[Any, Any, Any],
        one_click: NamedDependency[OneClickParts],
    ) -> Response[str]:
        started = time.perf_counter()
        channel = "one_click"
        try:
            form = await request.form()
            if form.get("source") == "page":
                channel = "unsubscribe_page"
        except Exception:  # noqa: S110 - an odd body must not stop an objection
            pass
        delivery_id = one_click.signer.read_delivery(Kind.UNSUBSCRIBE, token)
        taken = None
        if delivery_id is not None:
            taken = await one_click.objections.take(delivery_id, channel=channel)
        response = one_click.answer(taken.locale if taken else None)
        if taken is not None and taken.new:
            # The rest (withdrawals, the flag, the acknowledgement) after the answer; the entry
            # stays due until done, so a worker finishes it if this process stops first.
            response.background = BackgroundTask(one_click.objections.after_answer)
        ONE_CLICK_SECONDS.observe(time.perf_counter() - started)
        return response

    @get("/p/{token:str}", summary="Preference center: a choice per purpose and 'all marketing'")
    async def preferences_page(
        self,
        token: FromPath[str],
        db: DbDep,
        ctx: CtxDep,
        signer: SignerDep,
        pages: PagesDep,
    ) -> Response[str]:
        return await self._preferences(db, ctx, signer, pages, token, saved=False)

    @post("/p/{token:str}", status_code=200, summary="Save preferences")
    async def save_preferences(
        self,
        token: FromPath[str],
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        signer: SignerDep,
        acknowledger: AcknowledgerDep,
        pages: PagesDep,
    ) -> Response[str]:
        contact_id = signer.read_hex(Kind.PREFERENCES, token)
        addressee = None
        if contact_id is not None:
            form = await request.form()
            chosen = set(form.getall("purpose", []))
            # Only a switch the page showed can end the customer exception: a basis that
            # appeared since the page was drawn is not ended by a box the person never saw.
            end_soft_opt_in = "soft_opt_in" in form.getall("shown", []) and (
                form.get("soft_opt_in") != "keep"
            )
            current = await db.transaction(lambda s: preferences(s, contact_id, ctx))
            if current is not None:
                w = pages.words(current.locale)
                purposes = ctx.config.marketing.purposes
                addressee = await db.transaction(
                    lambda s: change_preferences(
                        s,
                        contact_id,
                        {p: p in chosen for p in purposes},
                        wording={p: w.get(p, p) for p in purposes},
                        stop_all=form.get("stop_all") == "1",
                        ctx=ctx,
                        end_soft_opt_in=end_soft_opt_in,
                    ),
                    urgent=True,  # an objection goes before a sending campaign's commits
                )
        response = await self._preferences(db, ctx, signer, pages, token, saved=True)
        response.background = acknowledge(acknowledger, addressee)
        return response

    async def _preferences(
        self,
        db: Database,
        ctx: Context,
        signer: TokenSigner,
        pages: Pages,
        token: str,
        saved: bool,
    ) -> Response[str]:
        current = await _the_person(db, ctx, signer, token)
        if current is None:
            return _invalid(pages)
        w = pages.words(current.locale)
        locale = language(current.locale, pages.sender.default_locale)
        data = _data_actions(w, token)
        if current.suppressed:
            return render(
                pages,
                current.locale,
                title=w["preferences_title"],
                paragraphs=[w["preferences_suppressed"]],
                data=data,
            )
        return render(
            pages,
            current.locale,
            title=w["preferences_title"],
            paragraphs=[w["preferences_saved"] if saved else w["preferences_text"]],
            form="preferences",
            action=f"/p/{token}",
            legend=w["preferences_legend"],
            purposes=_purposes_in_words(w, locale, current),
            customer=_customer_in_words(w, locale, current, ctx.config.category_names),
            all_legend=w["preferences_all_legend"],
            all_label=w["preferences_all"],
            button=w["preferences_button"],
            data=data,
        )

    @post(
        "/p/{token:str}/export",
        status_code=200,
        summary="Mail me my data (C38): the export goes to the address, never to the page",
    )
    async def export_mine(
        self,
        token: FromPath[str],
        db: DbDep,
        ctx: CtxDep,
        signer: SignerDep,
        notices: NoticesDep,
        pages: PagesDep,
    ) -> Response[str]:
        contact_id = signer.read_hex(Kind.PREFERENCES, token)
        asked = None
        if contact_id is not None:
            with contextlib.suppress(NotFound):
                asked = await db.transaction(
                    lambda s: export_for_the_person(
                        s, contact_id, clock=ctx.clock, hasher=ctx.hasher
                    )
                )
        if asked is None:
            return _invalid(pages)
        addressee, document = asked
        w = pages.words(addressee.locale)
        said = w["export_sent"] if document is not None else w["export_already"]
        response = render(pages, addressee.locale, title=w["export_title"], paragraphs=[said])
        if document is not None:
            response.background = BackgroundTask(notices.send_export, addressee, document)
        return response

    @get("/p/{token:str}/erase", summary="Delete my data: a button that POSTs; changes nothing")
    async def erase_page(
        self, token: FromPath[str], db: DbDep, ctx: CtxDep, signer: SignerDep, pages: PagesDep
    ) -> Response[str]:
        current = await _the_person(db, ctx, signer, token)
        if current is None:
            return _invalid(pages)
        return _one_button(pages, current.locale, "erase", f"/p/{token}/erase")

    @post("/p/{token:str}/erase", status_code=200, summary="Delete my data (C33, C38)")
    async def erase_mine(
        self, token: FromPath[str], db: DbDep, ctx: CtxDep, signer: SignerDep, pages: PagesDep
    ) -> Response[str]:
        current = await _the_person(db, ctx, signer, token)
        if current is None:
            return _invalid(pages)
        contact_id = current.contact_id
        with contextlib.suppress(NotFound):  # erased meanwhile: it is done either way
            await db.transaction(
                lambda s: erase_contact(s, contact_id, ctx=ctx, channel="page", actor="the person"),
                urgent=True,
            )
        w = pages.words(current.locale)
        return render(pages, current.locale, title=w["erased_title"], paragraphs=[w["erased_text"]])

    @get("/confirm/{token:str}", summary="Double opt-in: a button that POSTs; changes nothing")
    async def confirm_page(
        self,
        token: FromPath[str],
        db: DbDep,
        signer: SignerDep,
        pages: PagesDep,
    ) -> Response[str]:
        signup_id = signer.read_hex(Kind.CONFIRM, token)
        addressee = None
        if signup_id is not None:
            addressee = await db.transaction(lambda s: signup_addressee(s, signup_id))
        if addressee is None:
            return _invalid(pages)
        return _one_button(pages, addressee.locale, "confirm", f"/confirm/{token}")

    @post("/confirm/{token:str}", status_code=200, summary="Confirm a sign-up (C5)")
    async def confirm(
        self,
        token: FromPath[str],
        db: DbDep,
        ctx: CtxDep,
        signer: SignerDep,
        pages: PagesDep,
    ) -> Response[str]:
        signup_id = signer.read_hex(Kind.CONFIRM, token)
        contact_id = None
        addressee = None
        if signup_id is not None:
            contact_id = await db.transaction(lambda s: confirm_signup(s, signup_id, ctx))
            addressee = await db.transaction(lambda s: signup_addressee(s, signup_id))
        locale = addressee.locale if addressee else None
        w = pages.words(locale)
        if contact_id is None:
            return render(pages, None, title=w["invalid_title"], paragraphs=[w["invalid_text"]])
        return render(pages, locale, title=w["confirmed_title"], paragraphs=[w["confirmed_text"]])
