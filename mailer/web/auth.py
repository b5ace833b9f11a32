"""Bearer API keys with scopes: 401 without a valid key, 403 with the wrong scope."""

from __future__ import annotations

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
    scheme, _, presented = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise NotAuthorizedException(
            "missing API key: send Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    db: Database = connection.app.state.db
    async with db.sessions() as session:
        key = await authenticate(session, presented.strip())
    if key is None:
        raise NotAuthorizedException(
            "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    if not scope_allows(key.scope, needed):
        raise PermissionDeniedException(f"this key's scope '{key.scope}' cannot do this")
    connection.state.actor = f"key {key.id}"  # who did it, for the logs of decisions
