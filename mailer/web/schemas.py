"""The API's own models: every response, and the requests no domain function takes.

Field names follow ../shared/API.md; the class names are the OpenAPI component names. The
domain returns its own types (frozen dataclasses) and takes its own validated commands
(ContactIn, CampaignIn, ...); the controllers turn the one into these, e.g.
`CampaignOut.model_validate(view, from_attributes=True)`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    SkipValidation,
    model_serializer,
)

from campaigns.evidence.inputs import ContactIn
from campaigns.validation import StrictInput


class _WithoutNulls(BaseModel):
    """Leaves out fields that do not apply (a consent basis has no order, and so on)."""

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


# ---- contacts, consents and sign-ups ------------------------------------------------------


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


MAX_BATCH = 1000


class ContactBatchIn(BaseModel):
    """Up to 1,000 contacts. Items are validated one by one, so one bad item spoils no other."""

    contacts: list[SkipValidation[ContactIn]] = Field(min_length=1, max_length=MAX_BATCH)


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


class SignupOut(BaseModel):
    status: Literal["pending"] = "pending"
    detail: str = "If the address can receive mail, a confirmation link is on its way."


class ErrorOut(BaseModel):
    """The shape of every 4xx/5xx body."""

    status_code: int
    detail: str
    extra: dict[str, Any] = Field(default_factory=dict)


# ---- campaigns and audiences --------------------------------------------------------------


class DeliveryCountsOut(BaseModel):
    queued: int = 0
    skipped: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    unknown: int = 0
    unsubscribed: int = 0
    complaints: int = 0


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


class DomainCountsOut(BaseModel):
    """What a run met at a receiving domain ("*": all of them), C37."""

    domain: str
    messages: int
    delivered: int
    hard_bounces: int
    soft_bounces: int
    blocks: int
    complaints: int


class ReputationOut(BaseModel):
    run_id: int | None
    overall: DomainCountsOut
    domains: list[DomainCountsOut]


class CampaignDetailOut(CampaignOut):
    audience: AudienceOut
    paused_reason: str | None
    reputation: ReputationOut


class RunOut(BaseModel):
    """One firing of a campaign (a cron campaign has one per slot, whatever the workers)."""

    id: int
    scheduled_for: datetime
    status: str
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, int] = Field(description="the run's deliveries by status")
    handed_by: dict[str, int] = Field(
        description="sending process (host:pid, or MAILER_WORKER_ID) -> deliveries it handed"
        " to SMTP"
    )


class LinkClicksOut(BaseModel):
    url: str
    clicks: int = Field(description="people's clicks on the link (link scanners' not counted)")
    people: int = Field(description="distinct people who clicked, among the events kept")


class ClicksOut(BaseModel):
    """Aggregate tracking of a campaign (C35): only contacts who consented to `tracking` get
    tracked links and the pixel."""

    campaign_id: str
    links: list[LinkClicksOut]
    opens: int = Field(description="people who opened (never counted as activity: C36)")
    scanner_fetches: int = Field(description="fetches put down as link scanners', not counted")


# ---- the return channel -------------------------------------------------------------------


class RelayEventOut(BaseModel):
    accepted: bool
    duplicate: bool  # the same event came before: nothing changed
    verdict: str | None
    suppressed: str | None


class SesNotificationOut(BaseModel):
    accepted: bool
    events: list[RelayEventOut]  # one per event the notification carried, decided
    ignored: list[str]  # kinds that need nothing (a not-spam complaint, an SES Send ...)
    subscription_to_confirm: bool  # an SNS subscription: its URL is in the service log


class ReviewItemOut(BaseModel):
    id: int
    kind: str
    state: str
    received_at: datetime
    channel: str
    why: str
    status_code: str | None
    diagnostic: str | None
    feedback_type: str | None
    delivery_id: int | None
    reported_recipient: str | None
    note: str | None
    decided_at: datetime | None
    raw: str


class ReviewDecisionIn(StrictInput):
    action: Literal["suppress_hard", "suppress_complaint", "dismiss"]
    note: str | None = Field(default=None, max_length=500)


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


class ScheduleIn(StrictInput):
    """Once at `send_at`, or recurring by `cron` (crontab syntax) in `timezone`."""

    send_at: AwareDatetime | None = None
    cron: str | None = Field(default=None, max_length=100)
    timezone: str | None = Field(default=None, max_length=64)


class PreviewIn(StrictInput):
    contact_id: str | None = Field(default=None, max_length=32)


class PreviewOut(BaseModel):
    subject: str
    html: str
    text: str
    headers: dict[str, str]


class TestSendIn(StrictInput):
    emails: list[str] = Field(min_length=1, max_length=20)


class TestSendOut(BaseModel):
    sent: list[str]


# ---- suppressions -------------------------------------------------------------------------


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
