"""Where a person's data is: one registry of every table that holds personal data, so that
the export (C32) and the erasure (C33) walk the same list and a new table cannot be forgotten by
either. `tests/integration/test_rights.py` fails when a table is in neither this registry nor
`NOT_PERSONAL`, and after an erasure walks every table for what is left of the person.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from campaigns.models import (
    Acknowledgement,
    ConsentEvent,
    Contact,
    ContactHash,
    CurrentConsent,
    Delivery,
    InboundMessage,
    MarketingProfile,
    OrderCategory,
    PurchaseCoverage,
    PurchaseStanding,
    RightsRequest,
    ShopOrder,
    Signup,
    SoftOptInObjection,
    TrackingEvent,
)


@dataclass(frozen=True)
class People:
    """Whose data: contacts, and addresses (normalised) that may have no contact (a sign-up,
    a report). One person for a request; thousands at a time for retention."""

    contact_ids: tuple[str, ...]
    emails: tuple[str, ...]

    @classmethod
    def one(cls, contact_id: str | None, email: str) -> People:
        return cls((contact_id,) if contact_id else (), (email,))


def _t(model: Any) -> sa.Table:
    return model.__table__  # type: ignore[no-any-return]


CONTACT, DELIVERY, ORDER = _t(Contact), _t(Delivery), _t(ShopOrder)
MESSAGE = _t(InboundMessage)


def _of_contact(table: sa.Table) -> Callable[[People], sa.ColumnElement[bool]]:
    return lambda people: table.c.contact_id.in_(people.contact_ids)


def _orders(people: People) -> Any:
    return sa.select(ORDER.c.id).where(ORDER.c.contact_id.in_(people.contact_ids))


def _deliveries(people: People) -> Any:
    return sa.select(DELIVERY.c.id).where(DELIVERY.c.contact_id.in_(people.contact_ids))


def _reports(people: People) -> sa.ColumnElement[bool]:
    """Reports about the people's deliveries, and those whose own recipient field names one of
    the addresses (a report that mapped to no delivery, in review). Not a search of the raw
    bytes: "an@example.be" is inside "joan@example.be", and that report is joan's."""
    return sa.or_(
        MESSAGE.c.delivery_id.in_(_deliveries(people)),
        sa.func.lower(MESSAGE.c.reported_recipient).in_(people.emails),
    )


@dataclass(frozen=True)
class Holding:
    """A table with personal data: how a person's rows are found, under which name they are
    exported (None: not exported, and why), and what an erasure does to them."""

    table: sa.Table
    rows: Callable[[People], sa.ColumnElement[bool]]
    exported_as: str | None
    fields: tuple[str, ...]  # the columns exported, in order (stable names: the export's)
    on_erasure: Literal["delete", "unlink"]
    # What it holds, in the words of the record of processing (exported tables), or why it
    # is not exported.
    about: str


HOLDINGS: tuple[Holding, ...] = (
    # Children first: the erasure deletes in this order.
    Holding(
        _t(TrackingEvent),
        _of_contact(_t(TrackingEvent)),
        "tracking_events",
        ("id", "campaign_id", "delivery_id", "kind", "link_id", "at", "scanner"),
        "delete",
        "clicks and opens of the person's mail, only with their consent to tracking (C35)",
    ),
    Holding(
        MESSAGE,
        _reports,
        "reports",
        ("id", "received_at", "channel", "verdict", "rule", "form", "status_code",
         "diagnostic", "feedback_type", "reported_recipient", "delivery_id", "raw"),
        "delete",
        "bounce and complaint reports about the person's mail, raw, and what they said",
    ),
    Holding(
        _t(OrderCategory),
        lambda people: _t(OrderCategory).c.order_id.in_(_orders(people)),
        "order_categories",
        ("order_id", "category"),
        "delete",
        "the product categories of each order",
    ),
    Holding(
        DELIVERY,
        _of_contact(DELIVERY),
        "deliveries",
        ("id", "campaign_id", "run", "status", "skip_reason", "basis_kind", "consent_event_id",
         "order_id", "queued_at", "sent_at", "attempts", "last_error"),
        "delete",
        "each message: its campaign, the basis it was sent under, when, and its outcome",
    ),
    Holding(
        ORDER,
        _of_contact(ORDER),
        "orders",
        ("id", "email", "placed_at", "status", "opt_out_offered", "opt_out_used", "recorded_at"),
        "delete",
        "orders: id, date, status, whether the marketing opt-out was offered and used",
    ),
    Holding(
        _t(ConsentEvent),
        _of_contact(_t(ConsentEvent)),
        "consent_events",
        ("id", "purpose", "granted", "captured_at", "wording", "wording_version", "channel",
         "url", "ip", "checkbox_prechecked", "capture_method", "valid", "refused_reason",
         "recorded_at", "confirmed_at"),
        "delete",
        "consent evidence: purpose, wording and its version, channel, time, the IP address"
        " when the shop sends it, a double opt-in's confirmation; withdrawals likewise",
    ),
    Holding(
        _t(Acknowledgement),
        _of_contact(_t(Acknowledgement)),
        "acknowledgements",
        ("id", "created_at", "sent_at"),
        "delete",
        "the acknowledgements of the person's opt-outs (C15): when asked, when sent",
    ),
    Holding(
        _t(SoftOptInObjection),
        _of_contact(_t(SoftOptInObjection)),
        "soft_opt_in_objections",
        ("id", "channel", "objected_at"),
        "delete",
        "when the person ended mail under the customer exception, and where",
    ),
    Holding(
        _t(CurrentConsent), _of_contact(_t(CurrentConsent)), None, (), "delete",
        "derived from consent_events (exported)",
    ),
    Holding(
        _t(MarketingProfile), _of_contact(_t(MarketingProfile)), None, (), "delete",
        "derived from consent_events, orders and the suppression list (exported)",
    ),
    Holding(
        _t(PurchaseCoverage), _of_contact(_t(PurchaseCoverage)), None, (), "delete",
        "derived from orders (exported)",
    ),
    Holding(
        _t(PurchaseStanding), _of_contact(_t(PurchaseStanding)), None, (), "delete",
        "derived from orders (exported)",
    ),
    Holding(
        _t(ContactHash), _of_contact(_t(ContactHash)), None, (), "delete",
        "the address's HMAC under each secret: a key, not information about the person",
    ),
    Holding(
        _t(Signup),
        lambda people: _t(Signup).c.email.in_(people.emails),
        "signups",
        ("id", "email", "name", "locale", "purposes", "wording", "wording_version", "url", "ip",
         "created_at", "confirmed_at"),
        "delete",
        "web-form sign-ups: address, name, purposes, wording, IP address, confirmation",
    ),
    Holding(
        _t(RightsRequest),
        _of_contact(_t(RightsRequest)),
        "rights_requests",
        ("kind", "channel", "actor", "requested_at"),
        "unlink",
        "the rights the person exercised: what, when, by which channel and whom (kept after"
        " an erasure without the person, as the record that it was done)",
    ),
    Holding(
        CONTACT,
        lambda people: CONTACT.c.id.in_(people.contact_ids),
        "contact",
        ("id", "email", "external_id", "name", "locale", "source_channel", "source_url",
         "created_at", "updated_at"),
        "delete",
        "identity and contact: address, name, language, the shop's customer id, where the"
        " contact came from",
    ),
)  # fmt: skip

# Tables without personal data, and why: the registry test holds every other table to HOLDINGS.
NOT_PERSONAL: dict[str, str] = {
    "api_key": "staff keys (hashed)",
    "campaign": "what was sent, not to whom",
    "campaign_category": "a campaign's categories",
    "campaign_run": "when a campaign ran",
    "run_domain_count": "counts per receiving domain, no person",
    "tracked_link": "a campaign's links and their aggregate clicks, no person",
    "suppression": "an HMAC of the address with reason, channel and date, kept by design (C21);"
    " its notes are written without addresses, and an erasure clears them",
    # The shop's own staff, not the people it mails: outside these rights flows (C39).
    "staff_user": "the console's staff accounts: a work address, a role, a password hash",
    "staff_session": "a staff member's logged-in browser: a token's hash and times",
    "audit_log": "what staff did, naming a contact only by its id (an erased one names nobody)",
    "sending_process": "the live workers (a name and a time), for sharing the relay's limits",
    "wire_log": "a batch being handed over: delivery ids (an erased contact's name nobody) and"
    " SMTP reply codes without the relay's text; gone when the batch ends, or past the lease",
}
