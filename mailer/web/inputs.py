"""Text that cannot be stored is refused at the door: a path or a query with a NUL byte, or
with bytes that are not UTF-8, is answered 422 before any controller (and any database) sees
it. PostgreSQL refuses both (`invalid byte sequence for encoding "UTF8": 0x00`) where SQLite
would keep them: one answer on both. Bodies are checked by their models (StrictInput)."""

from __future__ import annotations

import json
from urllib.parse import unquote_to_bytes

from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)


def _unstorable(raw: bytes) -> bool:
    decoded = unquote_to_bytes(raw.replace(b"+", b" "))
    if b"\x00" in decoded:
        return True
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def refuse_unstorable_text(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
            where = None
            if _unstorable(raw_path) or "\x00" in scope["path"]:
                where = "path"
            elif _unstorable(scope.get("query_string", b"")):
                where = "query"
            if where is not None:
                await _refuse(send, where)
                return
        await app(scope, receive, send)

    return middleware


async def _refuse(send: Send, where: str) -> None:
    body = json.dumps(
        {
            "status_code": 422,
            "detail": f"the {where} holds a NUL byte or bytes that are not UTF-8",
            "extra": {"reason": "unstorable_text", "field": where},
        }
    ).encode()
    length = str(len(body)).encode()
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 422,
        "headers": [(b"content-type", b"application/json"), (b"content-length", length)],
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)
