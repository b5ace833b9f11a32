"""Request and response models (not tables: SQLModel table models skip validation).

Field names follow ../shared/API.md. Checks that need the business configuration (known
purposes and categories) live in the service modules, not here.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyAddress,
    SerializerFunctionWrapHandler,
    SkipValidation,
    field_validator,
    model_serializer,
)

from campaigns.addresses import normalise_address
from campaigns.config import SUPPORTED_LOCALES

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$"

Scope = Literal["shop", "marketer", "admin"]
OrderStatus = Literal["completed", "pending", "cancelled", "refunded"]
# How the consent was captured: only "checkbox" (a positive act on an unticked box) can be valid.
CaptureMethod = Literal["checkbox", "terms_acceptance", "contest_entry", "silence"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _single_line(value: str | None, what: str) -> str | None:
    if value is not None and _CONTROL.search(value):
        raise ValueError(f"{what} cannot contain control characters or line breaks")
    return value


def _email(value: str) -> str:
    return normalise_address(value)


def _locale(value: str | None) -> str | None:
    if value is None:
        return None
    primary = value.replace("_", "-").split("-")[0].lower()
    if primary not in SUPPORTED_LOCALES:
        raise ValueError(f"locale must be one of {', '.join(SUPPORTED_LOCALES)}")
    return primary


class SourceIn(_In):
    """Where the shop collected the address. Only first-party collection is accepted (C11)."""

    channel: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_-]*$")
    first_party: bool
    url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://\S+$")


class OrderIn(_In):
    id: str = Field(min_length=1, max_length=128, pattern=_IDENTIFIER)
    placed_at: AwareDatetime
    categories: list[str] = Field(min_length=1, max_length=50)
    marketing_opt_out_offered: bool
    marketing_opt_out_used: bool
    status: OrderStatus = "completed"


class ConsentEvidenceIn(_In):
    """A consent decision with its evidence (C2, C4). Incomplete evidence is stored as refused."""

    purpose: str = Field(min_length=1, max_length=64)
    granted: bool
    captured_at: AwareDatetime | None = None
    wording: str | None = Field(default=None, max_length=5000)
    wording_version: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=64, pattern=r"^[a-z][a-z0-9_-]*$")
    url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://\S+$")
    checkbox_prechecked: bool | None = None
    capture_method: CaptureMethod = "checkbox"
    ip: IPvAnyAddress | None = None

    @field_validator("wording_version")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return _single_line(value, "wording_version")


class ContactIn(_In):
    email: str = Field(max_length=320)
    external_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=_IDENTIFIER)
    name: str | None = Field(default=None, max_length=200)
    locale: str | None = Field(default=None, max_length=16)
    source: SourceIn
    orders: list[OrderIn] = Field(default_factory=list, max_length=200)
    consents: list[ConsentEvidenceIn] = Field(default_factory=list, max_length=100)

    _normal_email = field_validator("email")(_email)
    _normal_locale = field_validator("locale")(_locale)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _single_line(value, "name") or None


MAX_BATCH = 1000


class ContactBatchIn(BaseModel):
    """Up to 1,000 contacts. Items are validated one by one, so one bad item spoils no other."""

    contacts: list[SkipValidation[ContactIn]] = Field(min_length=1, max_length=MAX_BATCH)


class ConsentIn(ConsentEvidenceIn):
    """A grant or withdrawal from the shop's account settings, for a known contact."""

    email: str | None = Field(default=None, max_length=320)
    contact_id: str | None = Field(default=None, max_length=32)

    _normal_email = field_validator("email")(lambda v: None if v is None else _email(v))


# ---- responses -------------------------------------------------------------------------------


class _WithoutNulls(BaseModel):
    """Leaves out fields that do not apply (a consent basis has no order, and so on)."""

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class BasisOut(_WithoutNulls):
    """A legal basis the contact holds now, with the evidence it rests on.

    Consent: purpose, since, consent_event_id. Soft opt-in: categories, since (the order
    date), until (when it lapses, C10), order_id. Fields that do not apply are left out.
    """

    kind: Literal["consent", "soft_opt_in"]
    purpose: str | None = None
    since: datetime | None = None
    categories: list[str] | None = None
    until: datetime | None = None
    consent_event_id: str | None = None
    order_id: str | None = None


class RefusedOut(BaseModel):
    """An item of the request that gave no basis, and why."""

    item: str
    reason: str


class SourceOut(BaseModel):
    channel: str
    first_party: bool = True
    url: str | None = None


class ContactOut(BaseModel):
    id: str
    email: str
    external_id: str | None
    name: str | None
    locale: str | None
    source: SourceOut
    created_at: datetime
    updated_at: datetime
    suppressed: bool
    bases: list[BasisOut]
    refused: list[RefusedOut] = Field(default_factory=list)


class ConsentEventOut(BaseModel):
    id: str
    purpose: str
    granted: bool
    captured_at: datetime | None
    wording: str | None
    wording_version: str | None
    channel: str | None
    url: str | None
    ip: str | None
    checkbox_prechecked: bool | None
    capture_method: str
    valid: bool
    refused_reason: str | None
    recorded_at: datetime


class OrderOut(BaseModel):
    id: str
    placed_at: datetime
    status: str
    categories: list[str]
    marketing_opt_out_offered: bool
    marketing_opt_out_used: bool


class ContactDetailOut(ContactOut):
    """Profile, consent ledger, orders, current bases and suppression status."""

    consents: list[ConsentEventOut]
    orders: list[OrderOut]


class BatchItemOut(BaseModel):
    index: int
    status: int
    id: str | None = None
    detail: str | None = None
    field: str | None = None
    refused: list[RefusedOut] = Field(default_factory=list)


class BatchOut(BaseModel):
    results: list[BatchItemOut]


class ConsentOut(BaseModel):
    contact_id: str
    consent_event_id: str
    valid: bool
    refused_reason: str | None
    bases: list[BasisOut]


class ErrorOut(BaseModel):
    """The shape of every 4xx/5xx body."""

    status_code: int
    detail: str
    extra: dict[str, Any] = Field(default_factory=dict)


Email = Annotated[str, Field(max_length=320)]


# ---- campaigns and audiences -------------------------------------------------------------


class CampaignIn(_In):
    name: str = Field(min_length=1, max_length=200)
    purpose: str = Field(min_length=1, max_length=64)
    categories: list[str] = Field(default_factory=list, max_length=20)
    subject: str = Field(min_length=1, max_length=300)
    template: str = Field(min_length=1, max_length=200, pattern=r"^[a-z0-9][a-z0-9_-]*\.html$")
    locale: str | None = Field(default=None, max_length=16)

    _normal_locale = field_validator("locale")(_locale)

    @field_validator("subject", "name")
    @classmethod
    def _one_line_text(cls, value: str) -> str:
        return _single_line(value, "this field") or value


class DeliveryCountsOut(BaseModel):
    queued: int = 0
    skipped: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    unknown: int = 0
    unsubscribed: int = 0


class AudienceOut(BaseModel):
    """Who the campaign may reach now, by basis, and who it may not, by reason."""

    eligible: int
    by_basis: dict[str, int]
    excluded: dict[str, int]


class CampaignOut(BaseModel):
    id: str
    name: str
    purpose: str
    categories: list[str]
    subject: str
    template: str
    locale: str | None
    status: str
    created_at: datetime
    updated_at: datetime
    counts: DeliveryCountsOut


class CampaignDetailOut(CampaignOut):
    audience: AudienceOut


class WhyBasisOut(_WithoutNulls):
    """The evidence for the basis: a consent event, or an order (soft opt-in)."""

    kind: Literal["consent", "soft_opt_in"]
    consent_event_id: str | None = None
    purpose: str | None = None
    captured_at: datetime | None = None
    wording_version: str | None = None
    channel: str | None = None
    order_id: str | None = None
    placed_at: datetime | None = None
    categories: list[str] | None = None
    until: datetime | None = None


class WhyOut(BaseModel):
    contact_id: str
    campaign_id: str
    eligible: bool
    reason: str | None  # the exclusion reason when not eligible
    basis: WhyBasisOut | None  # the basis it holds (also when capped by frequency)
    detail: str


class SuppressionIn(_In):
    email: str = Field(max_length=320)
    reason: Literal["objection", "manual"]
    channel: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_-]*$")
    note: str | None = Field(default=None, max_length=500)

    _normal_email = field_validator("email")(_email)


class SuppressionEntryOut(BaseModel):
    id: str
    reason: str
    channel: str
    note: str | None
    created_at: datetime
    lifted_at: datetime | None


class SuppressionStatusOut(BaseModel):
    email: str
    suppressed: bool
    since: datetime | None
    entries: list[SuppressionEntryOut]


class SignupIn(_In):
    """A web-form sign-up: consent only after the double opt-in link is used (C5)."""

    email: str = Field(max_length=320)
    name: str | None = Field(default=None, max_length=200)
    locale: str | None = Field(default=None, max_length=16)
    purposes: list[str] = Field(min_length=1, max_length=10)
    wording: str = Field(min_length=1, max_length=5000)
    wording_version: str = Field(min_length=1, max_length=64)
    url: str = Field(max_length=2048, pattern=r"^https?://\S+$")
    ip: IPvAnyAddress | None = None

    _normal_email = field_validator("email")(_email)
    _normal_locale = field_validator("locale")(_locale)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _single_line(value, "name") or None


class SignupOut(BaseModel):
    status: Literal["pending"] = "pending"
    detail: str = "If the address can receive mail, a confirmation link is on its way."


class ScheduleIn(_In):
    """Once at `send_at`, or recurring by `cron` (crontab syntax) in `timezone`."""

    send_at: AwareDatetime | None = None
    cron: str | None = Field(default=None, max_length=100)
    timezone: str | None = Field(default=None, max_length=64)


class PreviewIn(_In):
    contact_id: str | None = Field(default=None, max_length=32)


class PreviewOut(BaseModel):
    subject: str
    html: str
    text: str
    headers: dict[str, str]


class TestSendIn(_In):
    emails: list[str] = Field(min_length=1, max_length=20)


class TestSendOut(BaseModel):
    sent: list[str]
