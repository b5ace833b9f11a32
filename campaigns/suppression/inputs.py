"""A staff-entered objection or manual suppression, as the domain takes it (C14, C16)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from campaigns.validation import CHANNEL, StrictInput, normal_email


class SuppressionIn(StrictInput):
    email: str = Field(max_length=320)
    reason: Literal["objection", "manual"]
    channel: str = Field(min_length=1, max_length=64, pattern=CHANNEL)
    note: str | None = Field(default=None, max_length=500)

    _normal_email = field_validator("email")(normal_email)
