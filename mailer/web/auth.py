"""API keys with scopes (Bearer, or HTTP Basic's password): 401 without a valid key, 403 with
the wrong scope."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from campaigns.apikeys import authenticate, scope_allows
from mailer.db import Database


async def require_scope(connection: ASGIConnection, handler: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Guard: a route that names a scope in `opt["scope"]` needs a key with that scope.

    Routes without one (recipient pages, health, the schema) are open: their token, if any,
    is the credential.
    """
    needed: str | None = handler.opt.get("scope")
    if needed is None:
        return
    presented = _presented_key(connection.headers.get("authorization", ""))
    if not presented:
        raise NotAuthorizedException(
            "missing API key: send Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    db: Database = connection.app.state.db
    async with db.sessions() as session:
        key = await authenticate(session, presented)
    if key is None:
        raise NotAuthorizedException(
            "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    if not scope_allows(key.scope, needed):
        raise PermissionDeniedException(f"this key's scope '{key.scope}' cannot do this")
    connection.state.actor = f"key {key.id}"  # who did it, for the logs of decisions


def _presented_key(header: str) -> str:
    """The key in `Authorization: Bearer <key>`, or the password of HTTP Basic (any user
    name), for the webhooks that can only send Basic (Amazon SNS, Postmark)."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2].strip()
    return ""


def actor_of(request: Request[Any, Any, Any]) -> str:
    """Who is asking, for the logs of decisions: the key the guard let in (never a secret)."""
    return str(getattr(request.state, "actor", "unknown"))
