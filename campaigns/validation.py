"""What the domain's validated commands share: a strict base model, and the checks for one-line
text, addresses, locales and identifiers.

The commands themselves live with their concept (campaigns/evidence/inputs.py, ...). Checks
that need the business configuration (known purposes and categories) live in the service
modules, not in the commands.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from campaigns.addresses import normalise_address
from campaigns.config import SUPPORTED_LOCALES

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$"  # an order id, an external contact id
CHANNEL = r"^[a-z][a-z0-9_-]*$"  # checkout, account_settings, phone ...
HTTP_URL = r"^https?://\S+$"


class StrictInput(BaseModel):
    """Unknown fields are refused; surrounding whitespace is stripped; text that no database
    stores alike is refused, in every field (`storable`)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        storable(value)
        return value


def storable(value: Any) -> None:
    """Raise ValueError for text PostgreSQL refuses and SQLite would keep: a NUL character, or
    a lone surrogate (no UTF-8 for it), in a string or in the lists and maps of one."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text cannot contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            storable(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            storable(item)


def single_line(value: str | None, what: str) -> str | None:
    if value is not None and CONTROL.search(value):
        raise ValueError(f"{what} cannot contain control characters or line breaks")
    return value


def normal_email(value: str) -> str:
    return normalise_address(value)


def optional_email(value: str | None) -> str | None:
    return None if value is None else normalise_address(value)


def normal_locale(value: str | None) -> str | None:
    if value is None:
        return None
    primary = value.replace("_", "-").split("-")[0].lower()
    if primary not in SUPPORTED_LOCALES:
        raise ValueError(f"locale must be one of {', '.join(SUPPORTED_LOCALES)}")
    return primary
