"""Tracked links and the open pixel (C35): only contacts who consented to `tracking` have them
in their mail. A redirect goes only to a link of the delivery's own campaign: an unknown or
tampered token, or a link of another campaign, is 404, never a redirect elsewhere."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Controller, HttpMethod, Request, Response, route
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from campaigns.tokens import Kind
from campaigns.tracking import Fetch, follow_click, record_open
from mailer.web.deps import CtxDep, DbDep, SignerDep

# A transparent 1x1 GIF.
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _location(url: str) -> str:
    """A link as a Location header carries it: non-ASCII characters percent-encoded (UTF-8),
    the rest as written (a template may write https://shop.be/thé)."""
    return quote(url, safe=_PRINTABLE_ASCII)


_PRINTABLE_ASCII = "".join(chr(c) for c in range(33, 127))


def _fetch(request: Request[Any, Any, Any]) -> Fetch:
    return Fetch(request.method, request.headers.get("user-agent", ""))


class TrackingController(Controller):
    tags = ["tracking"]

    @route(
        "/c/{token:str}",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        status_code=302,
        summary="A tracked link: a redirect (302) to the campaign's URL (HEAD: never counted)",
        responses={
            404: ResponseSpec(
                None, description="Unknown or tampered token, or a link of another campaign"
            )
        },
    )
    async def click(
        self,
        token: FromPath[str],
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        signer: SignerDep,
    ) -> Response[None]:
        ref = signer.read_click(token)
        if ref is None:
            raise NotFoundException()
        delivery_id, link_id = ref
        fetch = _fetch(request)
        url = await db.transaction(
            lambda s: follow_click(s, delivery_id, link_id, fetch, ctx),
            urgent=True,  # a click while a campaign sends must not wait out its commits (SQLite)
        )
        if url is None:
            raise NotFoundException()
        return Response(None, status_code=302, headers={**PRIVATE, "Location": _location(url)})

    @route(
        "/o/{name:str}",
        http_method=[HttpMethod.GET, HttpMethod.HEAD],
        summary="The open pixel, `/o/{token}.gif`",
    )
    async def pixel(
        self,
        name: FromPath[str],
        request: Request[Any, Any, Any],
        db: DbDep,
        ctx: CtxDep,
        signer: SignerDep,
    ) -> Response[bytes]:
        token = name.removesuffix(".gif")
        delivery_id = signer.read_delivery(Kind.OPEN, token) if name.endswith(".gif") else None
        if delivery_id is None:
            raise NotFoundException()
        fetch = _fetch(request)
        await db.transaction(lambda s: record_open(s, delivery_id, fetch, ctx), urgent=True)
        return Response(PIXEL, media_type="image/gif", headers=PRIVATE)
