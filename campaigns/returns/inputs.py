"""What a relay posts about a message it handled (API.md "Bounces and complaints")."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from campaigns.validation import StrictInput, single_line


class RelayEventIn(StrictInput):
    message_id: str | None = Field(default=None, max_length=300)  # our Message-ID header
    token: str | None = Field(default=None, max_length=120)  # the VERP token, or the address
    type: Literal["hard", "soft", "complaint", "delivery"]
    status: str | None = Field(default=None, pattern=r"^[245]\.\d{1,3}\.\d{1,3}$")
    diagnostic: str | None = Field(default=None, max_length=1000)
    timestamp: AwareDatetime

    @field_validator("message_id", "token", "diagnostic")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return single_line(value, "this field")

    @model_validator(mode="after")
    def _names_a_message(self) -> RelayEventIn:
        if not self.message_id and not self.token:
            raise ValueError("give message_id or token: which message the event is about")
        return self
