"""Recipient pages: unsubscribe (RFC 8058 one-click and a page), preferences, double opt-in.

No key, cookie, login or CSRF token: the signed token in the path is the credential. A GET
never changes anything (link scanners fetch links, C27). A forged, tampered or unknown token
changes nothing and gets the same answer as a valid one (C28). Nothing here redirects.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.params import FromPath

from campaigns.recipients import (
    Addressee,
    change_preferences,
    confirm_signup,
    locale_of_delivery,
    preferences,
    signup_addressee,
    unsubscribe_delivery,
)
from campaigns.tokens import Kind
from mailer.delivery.footer import language
from mailer.delivery.notices import notice
from mailer.services import Services
from mailer.web.page_text import PAGES

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


def render(services: Services, locale: str | None, **context: Any) -> Response[str]:
    lang = language(locale, services.settings.business.sender.default_locale)
    sender = services.settings.business.sender
    html = services.pages.get_template("page.html").render(
        locale=lang,
        shop=sender.from_name,
        shop_identity=f"{sender.legal_name} · {sender.address} · {sender.enterprise_number}"
        f" · {sender.contact_email}",
        **context,
    )
    return Response(html, media_type=MediaType.HTML, status_code=200, headers=HEADERS)


def words(services: Services, locale: str | None) -> dict[str, str]:
    return PAGES[language(locale, services.settings.business.sender.default_locale)]


def acknowledge(services: Services, addressee: Addressee | None) -> BackgroundTask | None:
    """One acknowledgement mail per opt-out, without advertising (C15), after the commit."""
    if addressee is None or not services.settings.business.marketing.acknowledge_opt_outs:
        return None
    message = notice(
        "ack",
        to_email=addressee.email,
        to_name=addressee.name,
        locale=addressee.locale,
        sender=services.settings.business.sender,
        clock=services.context.clock,
    )
    return BackgroundTask(services.transport.send_quietly, message)


class RecipientPages(Controller):
    tags = ["recipients"]

    @get("/u/{token:str}", summary="Unsubscribe page: a button that POSTs; changes nothing")
    async def unsubscribe_page(self, token: FromPath[str], state: State) -> Response[str]:
        services: Services = state.services
        delivery_id = services.signer.read_delivery(Kind.UNSUBSCRIBE, token)
        locale = None
        if delivery_id is not None:
            locale = await services.transaction(lambda s: locale_of_delivery(s, delivery_id))
        w = words(services, locale)
        return render(
            services,
            locale,
            title=w["unsubscribe_title"],
            paragraphs=[w["unsubscribe_ask"]],
            form="unsubscribe",
            action=f"/u/{token}",
            button=w["unsubscribe_button"],
        )

    @post(
        "/u/{token:str}",
        status_code=200,
        summary="One-click unsubscribe (RFC 8058) and the page's button",
        description="Accepts `List-Unsubscribe=One-Click` as application/x-www-form-urlencoded"
        " or multipart/form-data. The suppression is committed before the answer.",
    )
    async def unsubscribe(
        self, token: FromPath[str], request: Request[Any, Any, Any], state: State
    ) -> Response[str]:
        services: Services = state.services
        channel = "one_click"
        try:
            form = await request.form()
            if form.get("source") == "page":
                channel = "unsubscribe_page"
        except Exception:  # noqa: S110 - an odd body must not stop an objection
            pass
        delivery_id = services.signer.read_delivery(Kind.UNSUBSCRIBE, token)
        addressee = None
        if delivery_id is not None:
            addressee = await services.transaction(
                lambda s: unsubscribe_delivery(
                    s, delivery_id, channel=channel, ctx=services.context
                )
            )
        locale = addressee.locale if addressee else None
        w = words(services, locale)
        response = render(
            services, locale, title=w["unsubscribed_title"], paragraphs=[w["unsubscribed_text"]]
        )
        response.background = acknowledge(services, addressee)
        return response

    @get("/p/{token:str}", summary="Preference center: a choice per purpose and 'all marketing'")
    async def preferences_page(self, token: FromPath[str], state: State) -> Response[str]:
        services: Services = state.services
        return await self._preferences(services, token, saved=False)

    @post("/p/{token:str}", status_code=200, summary="Save preferences")
    async def save_preferences(
        self, token: FromPath[str], request: Request[Any, Any, Any], state: State
    ) -> Response[str]:
        services: Services = state.services
        contact_id = services.signer.read_hex(Kind.PREFERENCES, token)
        addressee = None
        if contact_id is not None:
            form = await request.form()
            chosen = set(form.getall("purpose", []))
            current = await services.transaction(
                lambda s: preferences(s, contact_id, services.context)
            )
            if current is not None:
                w = words(services, current.locale)
                purposes = services.settings.business.marketing.purposes
                addressee = await services.transaction(
                    lambda s: change_preferences(
                        s,
                        contact_id,
                        {p: p in chosen for p in purposes},
                        wording={p: w.get(p, p) for p in purposes},
                        stop_all=form.get("stop_all") == "1",
                        ctx=services.context,
                    )
                )
        response = await self._preferences(services, token, saved=True)
        response.background = acknowledge(services, addressee)
        return response

    async def _preferences(self, services: Services, token: str, saved: bool) -> Response[str]:
        contact_id = services.signer.read_hex(Kind.PREFERENCES, token)
        current = None
        if contact_id is not None:
            current = await services.transaction(
                lambda s: preferences(s, contact_id, services.context)
            )
        if current is None:
            w = words(services, None)
            return render(services, None, title=w["invalid_title"], paragraphs=[w["invalid_text"]])
        w = words(services, current.locale)
        if current.suppressed:
            return render(
                services,
                current.locale,
                title=w["preferences_title"],
                paragraphs=[w["preferences_suppressed"]],
            )
        return render(
            services,
            current.locale,
            title=w["preferences_title"],
            paragraphs=[w["preferences_saved"] if saved else w["preferences_text"]],
            form="preferences",
            action=f"/p/{token}",
            legend=w["preferences_legend"],
            purposes=[
                {"purpose": p, "label": w.get(p, p), "on": on} for p, on in current.purposes.items()
            ],
            all_legend=w["preferences_all_legend"],
            all_label=w["preferences_all"],
            button=w["preferences_button"],
        )

    @get("/confirm/{token:str}", summary="Double opt-in: a button that POSTs; changes nothing")
    async def confirm_page(self, token: FromPath[str], state: State) -> Response[str]:
        services: Services = state.services
        signup_id = services.signer.read_hex(Kind.CONFIRM, token)
        addressee = None
        if signup_id is not None:
            addressee = await services.transaction(lambda s: signup_addressee(s, signup_id))
        locale = addressee.locale if addressee else None
        w = words(services, locale)
        if addressee is None:
            return render(services, None, title=w["invalid_title"], paragraphs=[w["invalid_text"]])
        return render(
            services,
            locale,
            title=w["confirm_title"],
            paragraphs=[w["confirm_ask"]],
            form="confirm",
            action=f"/confirm/{token}",
            button=w["confirm_button"],
        )

    @post("/confirm/{token:str}", status_code=200, summary="Confirm a sign-up (C5)")
    async def confirm(self, token: FromPath[str], state: State) -> Response[str]:
        services: Services = state.services
        signup_id = services.signer.read_hex(Kind.CONFIRM, token)
        contact_id = None
        addressee = None
        if signup_id is not None:
            contact_id = await services.transaction(
                lambda s: confirm_signup(s, signup_id, services.context)
            )
            addressee = await services.transaction(lambda s: signup_addressee(s, signup_id))
        locale = addressee.locale if addressee else None
        w = words(services, locale)
        if contact_id is None:
            return render(services, None, title=w["invalid_title"], paragraphs=[w["invalid_text"]])
        return render(
            services, locale, title=w["confirmed_title"], paragraphs=[w["confirmed_text"]]
        )
