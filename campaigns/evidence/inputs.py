"""The shop's evidence, as the domain takes it: contacts with their source, orders and consent
decisions, a consent decision for a known contact, a web-form sign-up (field names as API.md).

These are validated commands: a value that gets here has the right shape. Whether a purpose or
category is known, and whether the evidence gives a basis, is decided by the modules that use
them (campaigns/evidence/contacts.py, consent.py, profiles.py, campaigns/recipients.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field, IPvAnyAddress, field_validator

from campaigns.validation import (
    CHANNEL,
    HTTP_URL,
    IDENTIFIER,
    StrictInput,
    normal_email,
    normal_locale,
    optional_email,
    single_line,
)

OrderStatus = Literal["completed", "pending", "cancelled", "refunded"]
# How the consent was captured: only "checkbox" (a positive act on an unticked box) can be valid.
CaptureMethod = Literal["checkbox", "terms_acceptance", "contest_entry", "silence"]


class SourceIn(StrictInput):
    """Where the shop collected the address. Only first-party collection is accepted (C11)."""

    channel: str = Field(min_length=1, max_length=64, pattern=CHANNEL)
    first_party: bool
    url: str | None = Field(default=None, max_length=2048, pattern=HTTP_URL)


class OrderIn(StrictInput):
    id: str = Field(min_length=1, max_length=128, pattern=IDENTIFIER)
    placed_at: AwareDatetime
    categories: list[str] = Field(min_length=1, max_length=50)
    marketing_opt_out_offered: bool
    marketing_opt_out_used: bool
    status: OrderStatus = "completed"


class ConsentEvidenceIn(StrictInput):
    """A consent decision with its evidence (C2, C4). Incomplete evidence is stored as refused."""

    purpose: str = Field(min_length=1, max_length=64)
    granted: bool
    captured_at: AwareDatetime | None = None
    wording: str | None = Field(default=None, max_length=5000)
    wording_version: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=64, pattern=CHANNEL)
    url: str | None = Field(default=None, max_length=2048, pattern=HTTP_URL)
    checkbox_prechecked: bool | None = None
    capture_method: CaptureMethod = "checkbox"
    ip: IPvAnyAddress | None = None

    @field_validator("wording_version")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return single_line(value, "wording_version")


class ContactIn(StrictInput):
    email: str = Field(max_length=320)
    external_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=IDENTIFIER)
    name: str | None = Field(default=None, max_length=200)
    locale: str | None = Field(default=None, max_length=16)
    source: SourceIn
    orders: list[OrderIn] = Field(default_factory=list, max_length=200)
    consents: list[ConsentEvidenceIn] = Field(default_factory=list, max_length=100)

    _normal_email = field_validator("email")(normal_email)
    _normal_locale = field_validator("locale")(normal_locale)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return single_line(value, "name") or None


class ConsentIn(ConsentEvidenceIn):
    """A grant or withdrawal from the shop's account settings, for a known contact."""

    email: str | None = Field(default=None, max_length=320)
    contact_id: str | None = Field(default=None, max_length=32)

    _normal_email = field_validator("email")(optional_email)


class SignupIn(StrictInput):
    """A web-form sign-up: consent only after the double opt-in link is used (C5)."""

    email: str = Field(max_length=320)
    name: str | None = Field(default=None, max_length=200)
    locale: str | None = Field(default=None, max_length=16)
    purposes: list[str] = Field(min_length=1, max_length=10)
    wording: str = Field(min_length=1, max_length=5000)
    wording_version: str = Field(min_length=1, max_length=64)
    url: str = Field(max_length=2048, pattern=HTTP_URL)
    ip: IPvAnyAddress | None = None

    _normal_email = field_validator("email")(normal_email)
    _normal_locale = field_validator("locale")(normal_locale)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return single_line(value, "name") or None
