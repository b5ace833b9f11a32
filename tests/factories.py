"""Request bodies as the shop backend sends them (API.md), with overridable parts."""

from __future__ import annotations

from typing import Any


def consent(purpose: str = "newsletter", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "purpose": purpose,
        "granted": True,
        "captured_at": "2026-11-20T10:00:00Z",
        "wording": "Ja, stuur mij de nieuwsbrief",
        "wording_version": "2026-01",
        "channel": "checkout",
        "checkbox_prechecked": False,
        "ip": None,
    }
    body.update(overrides)
    return body


def order(order_id: str = "SO-1001", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": order_id,
        "placed_at": "2026-11-20T10:00:00Z",
        "categories": ["tea"],
        "marketing_opt_out_offered": True,
        "marketing_opt_out_used": False,
    }
    body.update(overrides)
    return body


def contact(
    email: str = "an@example.be",
    *,
    orders: list[dict[str, Any]] | None = None,
    consents: list[dict[str, Any]] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": email,
        "name": "An Peeters",
        "locale": "nl",
        "source": {
            "channel": "checkout",
            "first_party": True,
            "url": "https://shop.example.be/checkout",
        },
        "orders": orders or [],
        "consents": consents or [],
    }
    body.update(overrides)
    return body
