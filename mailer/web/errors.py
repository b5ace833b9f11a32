"""One error shape everywhere: {"status_code", "detail", "extra"} (API.md)."""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from pydantic import ValidationError

from campaigns.errors import Conflict, DomainError, InvalidInput, NotFound
from mailer.web.schemas import ErrorOut

log = logging.getLogger("mailer.web")

_DOMAIN_STATUS: list[tuple[type[DomainError], int]] = [
    (InvalidInput, 422),
    (Conflict, 409),
    (NotFound, 404),
]


def status_of(error: DomainError) -> int:
    """The HTTP status of a domain error: the one map, for error bodies and batch items alike.
    Any other refusal of the domain is an unprocessable request."""
    return next((code for kind, code in _DOMAIN_STATUS if isinstance(error, kind)), 422)


def error_response(
    status: int,
    detail: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    return Response(
        {"status_code": status, "detail": detail, "extra": extra or {}},
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def field_path(location: tuple[Any, ...] | list[Any] | str) -> str:
    """('orders', 0, 'id') or 'orders.0.id' -> 'orders[0].id'."""
    parts = location.split(".") if isinstance(location, str) else [str(p) for p in location]
    path = ""
    for part in parts:
        path += f"[{part}]" if part.isdigit() else (f".{part}" if path else part)
    return path


def pydantic_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": field_path(error["loc"]), "message": error["msg"]} for error in exc.errors()]


_PARAMETER = re.compile(r"parameter '([^']+)'")


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    errors = [
        {"field": field_path(str(item.get("key", ""))), "message": str(item.get("message"))}
        for item in (exc.extra if isinstance(exc.extra, list) else [])
        if isinstance(item, dict)
    ]
    if not errors:
        # A missing path or query parameter: Litestar names it only in the message.
        named = _PARAMETER.search(str(exc.detail))
        extra = {"field": named.group(1)} if named else {}
        return error_response(422, str(exc.detail) or "invalid request", extra)
    first = errors[0]
    where = first["field"] or "body"
    return error_response(
        422, f"{where}: {first['message']}", {"field": first["field"], "errors": errors}
    )


def _domain(_: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, Any]]:
    extra = {k: v for k, v in (("field", exc.field), ("reason", exc.reason)) if v is not None}
    return error_response(status_of(exc), exc.message, extra)


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    extra = exc.extra if isinstance(exc.extra, dict) else {}
    return error_response(exc.status_code, exc.detail, extra, headers=exc.headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    # Tracebacks only in dev mode: in production a message may carry an address or a key.
    dev_mode = request.app.state.dev_mode
    log.error(
        "unhandled %s on %s %s",
        type(exc).__name__,
        request.method,
        request.scope["route_handler"].paths,
        exc_info=exc if dev_mode else None,
    )
    return error_response(500, "internal server error")


exception_handlers: dict[Any, Any] = {
    ValidationException: _validation,
    DomainError: _domain,
    HTTPException: _http,
    Exception: _unexpected,
}


def responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error statuses a route can answer."""
    text = {
        401: "Missing or invalid API key",
        403: "The key's scope does not allow this",
        404: "Not found",
        409: "Conflicts with stored data",
        413: "Body larger than 1 MiB",
        422: "Invalid input; `extra.field` names the offending field",
    }
    return {code: ResponseSpec(data_container=ErrorOut, description=text[code]) for code in codes}
