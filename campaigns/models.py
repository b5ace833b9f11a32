"""Tables. Evidence (consent events) is append-only; current state is derived from it.

Times are stored as UTC. Contacts have opaque string ids; rows that are never addressed from
outside (consent events, suppression entries) use integer ids, rendered as strings in JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

from campaigns.sending.pauses import REASON_LENGTH
from campaigns.sending.states import CampaignStatus, RunStatus


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, on SQLite (which has no zones) and PostgreSQL alike."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: the domain works in UTC")
        value = value.astimezone(UTC)
        # SQLite compares text: store one fixed format without an offset.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# 64-bit ids on PostgreSQL; SQLite needs plain INTEGER for its rowid autoincrement.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> Any:
    return Field(default=None, sa_column=sa.Column(BigId, primary_key=True, autoincrement=True))


def _utc(nullable: bool = False, **kw: Any) -> Any:
    return Field(sa_column=sa.Column(UTCDateTime(), nullable=nullable, **kw))


def _of_contact() -> Any:
    """A row of a contact's, gone with it (an erasure deletes the contact last)."""
    return Field(
        sa_column=sa.Column(
            sa.String(32),
            sa.ForeignKey("contact.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )


class Contact(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    email: str = Field(max_length=320, unique=True)  # normalised address
    external_id: str | None = Field(default=None, max_length=128, unique=True)
    name: str | None = Field(default=None, max_length=200)
    locale: str | None = Field(default=None, max_length=8)
    source_channel: str = Field(max_length=64)
    source_url: str | None = Field(default=None, max_length=2048)
    created_at: datetime = _utc()
    updated_at: datetime = _utc()


class ConsentEvent(SQLModel, table=True):
    """One grant or withdrawal, exactly as captured. Never updated: a change is a new event."""

    __tablename__ = "consent_event"
    __table_args__ = (
        sa.UniqueConstraint("contact_id", "fingerprint", name="uq_consent_event_fingerprint"),
        sa.Index("ix_consent_event_contact_purpose", "contact_id", "purpose", "captured_at"),
    )

    id: int | None = _id()
    contact_id: str = Field(
        sa_column=sa.Column(
            sa.String(32), sa.ForeignKey("contact.id", ondelete="CASCADE"), nullable=False
        )
    )
    purpose: str = Field(max_length=64)
    granted: bool
    captured_at: datetime | None = _utc(nullable=True)
    wording: str | None = Field(default=None, sa_type=sa.Text)
    wording_version: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=64)
    url: str | None = Field(default=None, max_length=2048)
    ip: str | None = Field(default=None, max_length=45)
    checkbox_prechecked: bool | None = None
    capture_method: str = Field(max_length=32)
    valid: bool
    refused_reason: str | None = Field(default=None, max_length=64)
    recorded_at: datetime = _utc()
    confirmed_at: datetime | None = _utc(nullable=True)  # double opt-in confirmation (C5)
    fingerprint: str = Field(max_length=64)


class ShopOrder(SQLModel, table=True):
    """A shop order, keyed by the shop's own order id: pushing it again is the same order."""

    __tablename__ = "shop_order"

    id: str = Field(primary_key=True, max_length=128)
    contact_id: str = _of_contact()
    # The address the customer gave in this order (C6); indexed for the C7 opt-out check.
    email: str = Field(max_length=320, index=True)
    placed_at: datetime = _utc()
    status: str = Field(max_length=16)
    opt_out_offered: bool
    opt_out_used: bool
    recorded_at: datetime = _utc()


class OrderCategory(SQLModel, table=True):
    __tablename__ = "order_category"

    order_id: str = Field(
        sa_column=sa.Column(
            sa.String(128), sa.ForeignKey("shop_order.id", ondelete="CASCADE"), primary_key=True
        )
    )
    category: str = Field(primary_key=True, max_length=64, index=True)


class Suppression(SQLModel, table=True):
    """An objection or a delivery failure, keyed by HMAC of the address; outlives the contact."""

    __table_args__ = (
        sa.Index(
            "ix_suppression_follow_up_due",
            "id",
            postgresql_where=sa.text("follow_up_due"),
            sqlite_where=sa.text("follow_up_due"),
        ),
    )

    id: int | None = _id()
    address_hash: str = Field(max_length=64, index=True)
    key_id: str = Field(max_length=16)  # which secret made the hash (rotation)
    reason: str = Field(max_length=32)
    channel: str = Field(max_length=64)
    note: str | None = Field(default=None, max_length=500)
    campaign_id: str | None = Field(default=None, max_length=32)  # the mail it came from, if any
    created_at: datetime = _utc()
    lifted_at: datetime | None = _utc(nullable=True)
    # An objection taken on a hot path (one-click, mailto) whose consequences are still to be
    # drawn: the profile's flag, the withdrawal events, the acknowledgement (objections.py).
    follow_up_due: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: str = Field(primary_key=True, max_length=16)  # the public part of the key
    name: str = Field(max_length=100)
    scope: str = Field(max_length=16)
    key_hash: str = Field(max_length=64)
    created_at: datetime = _utc()
    revoked_at: datetime | None = _utc(nullable=True)


metadata = SQLModel.metadata


class ContactHash(SQLModel, table=True):
    """The contact's address as HMAC under each configured secret, so the audience query can
    join the suppression list in SQL, whichever secret made an entry (rotation, C21)."""

    __tablename__ = "contact_hash"

    contact_id: str = Field(
        sa_column=sa.Column(
            sa.String(32), sa.ForeignKey("contact.id", ondelete="CASCADE"), primary_key=True
        )
    )
    key_id: str = Field(primary_key=True, max_length=16)
    address_hash: str = Field(max_length=64, index=True)


class Campaign(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    purpose: str = Field(max_length=64)
    subject: str = Field(max_length=300)
    template: str = Field(max_length=200)
    locale: str | None = Field(default=None, max_length=8)
    # draft | scheduled | sending | paused | done | cancelled
    status: str = Field(default=CampaignStatus.DRAFT, max_length=16)
    send_at: datetime | None = _utc(nullable=True)  # a one-off send
    cron: str | None = Field(default=None, max_length=100)  # a recurring one
    timezone: str | None = Field(default=None, max_length=64)
    paused_reason: str | None = Field(default=None, max_length=REASON_LENGTH)
    created_at: datetime = _utc()
    updated_at: datetime = _utc()


class CampaignRun(SQLModel, table=True):
    """One firing of a campaign. Unique per (campaign, scheduled time): two schedulers that
    fire at once insert one run, so the campaign is sent once."""

    __tablename__ = "campaign_run"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "scheduled_for", name="uq_campaign_run_firing"),
    )

    id: int | None = _id()
    campaign_id: str = Field(
        sa_column=sa.Column(
            sa.String(32), sa.ForeignKey("campaign.id", ondelete="CASCADE"), nullable=False
        )
    )
    scheduled_for: datetime = _utc()
    status: str = Field(default=RunStatus.SENDING, max_length=16)
    started_at: datetime = _utc()
    finished_at: datetime | None = _utc(nullable=True)
    # The reputation limits this run passed and paused for (C37), comma-separated: a marketer
    # who resumes accepts them, so the same limit does not pause the run again.
    guard_tripped: str | None = Field(default=None, max_length=500)


class CampaignCategory(SQLModel, table=True):
    __tablename__ = "campaign_category"

    campaign_id: str = Field(
        sa_column=sa.Column(
            sa.String(32), sa.ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True
        )
    )
    category: str = Field(primary_key=True, max_length=64)


class Delivery(SQLModel, table=True):
    """One campaign run's message to one contact, with the legal basis it was sent under.

    At most one row per (campaign, run, contact): the unique key is what makes materialising
    an audience idempotent and dispatch crash-safe.
    """

    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "run", "contact_id", name="uq_delivery_recipient"),
        sa.Index("ix_delivery_contact_sent", "contact_id", "sent_at"),
        # A campaign's counts by run and status are read from this index alone (the console's
        # pages at a million deliveries), and the claim finds a run's queued rows with it.
        sa.Index("ix_delivery_campaign_run_status", "campaign_id", "run", "status"),
    )

    id: int | None = _id()
    # No foreign keys at all, not even to the campaign (migration 0006): PostgreSQL checks a
    # foreign key row by row, locking the referenced row, which doubled the time to
    # materialise an audience (365,000 deliveries: 8 s of 20 for the contact key alone; the
    # campaign key, the same row 365,000 times, another 2-3 s). Deliveries are only ever made
    # by materialise, for a campaign it has just loaded, and campaigns are never deleted (they
    # are cancelled), so the key guarded nothing; a delete of a campaign must delete its
    # deliveries itself, as no cascade does.
    campaign_id: str = Field(max_length=32)
    run: int = Field(default=0)
    # No foreign keys to contact and consent event either (nor to the order, as before):
    # materialise selects only existing contacts and their current evidence, and evidence is
    # append-only; a delivery whose contact is gone is never sent (the claim asks the audience
    # query again, which has no row for it: `no_basis`) nor composed (it joins the contact).
    # Erasing a contact (C33) must therefore delete its deliveries itself: no cascade does.
    contact_id: str = Field(max_length=32)
    # queued | skipped | sending | sent | failed | bounced | unknown
    status: str = Field(max_length=16)
    skip_reason: str | None = Field(default=None, max_length=32)
    basis_kind: str | None = Field(default=None, max_length=16)  # consent | soft_opt_in
    consent_event_id: int | None = Field(default=None, sa_column=sa.Column(BigId, nullable=True))
    order_id: str | None = Field(default=None, max_length=128)
    queued_at: datetime = _utc()
    sent_at: datetime | None = _utc(nullable=True)
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    next_attempt_at: datetime | None = _utc(nullable=True)  # a retry after a 4xx
    claimed_at: datetime | None = _utc(nullable=True)  # when a worker took it for sending
    handed_by: str | None = Field(default=None, max_length=100)  # the sending process (host:pid)
    # The handed-over batch it was part of: its row in the wire log says, after a crash,
    # whether it was on the wire and what the relay answered (mailer/delivery/journal.py).
    handoff: int | None = Field(default=None, sa_column=sa.Column(BigId, nullable=True))
    last_error: str | None = Field(default=None, max_length=300)


class Signup(SQLModel, table=True):
    """A web-form sign-up waiting for its double opt-in (C5). Gives no basis until confirmed."""

    id: str = Field(primary_key=True, max_length=32)
    email: str = Field(max_length=320, index=True)
    name: str | None = Field(default=None, max_length=200)
    locale: str | None = Field(default=None, max_length=8)
    purposes: str = Field(max_length=500)  # comma-separated
    wording: str = Field(sa_type=sa.Text)
    wording_version: str = Field(max_length=64)
    url: str = Field(max_length=2048)
    ip: str | None = Field(default=None, max_length=45)
    created_at: datetime = _utc()
    confirmed_at: datetime | None = _utc(nullable=True)


class RightsRequest(SQLModel, table=True):
    """A person's rights exercised (C32, C33, C38): what, when, by which channel and by whom,
    never the address. Kept after an erasure, no longer linked to anyone (accountability)."""

    __tablename__ = "rights_request"

    id: int | None = _id()
    contact_id: str | None = Field(default=None, max_length=32, index=True)  # None once erased
    kind: str = Field(max_length=16)  # export | erasure
    channel: str = Field(max_length=16)  # api | cli | page
    actor: str = Field(max_length=100)  # "key <id>", "cli", "the person"
    requested_at: datetime = _utc()


class SoftOptInObjection(SQLModel, table=True):
    """The person ended the customer exception alone (C38, GDPR 21, ePD 13(2)): no more mail
    under the soft opt-in, whatever they buy, while consents they gave stand. Evidence like a
    consent event: never updated; an explicit consent is the way back."""

    __tablename__ = "soft_opt_in_objection"

    id: int | None = _id()
    contact_id: str = _of_contact()
    channel: str = Field(max_length=64)  # preference_center
    objected_at: datetime = _utc()


class Acknowledgement(SQLModel, table=True):
    """An opt-out's acknowledgement mail (C15), written in the objection's own transaction, so
    that no restart between the answer and the mail loses it: sent right after the commit by
    the process that took the objection, or else by a worker (mailer/delivery/acknowledger.py).
    `claimed_at`: a sender has it in hand (a lease, so a crashed sender's share is taken up)."""

    id: int | None = _id()
    contact_id: str = _of_contact()
    created_at: datetime = _utc()
    claimed_at: datetime | None = _utc(nullable=True)
    sent_at: datetime | None = _utc(nullable=True, index=True)
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class TrackedLink(SQLModel, table=True):
    """A link of a campaign that is rewritten through `/c/{token}` for contacts who consented
    to `tracking` (C35): the redirect goes only to a URL stored here for the delivery's
    campaign. `clicks` counts people's clicks (not link scanners'), kept after the events of
    the people who clicked are erased: an aggregate, no one in it."""

    __tablename__ = "tracked_link"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "url", name="uq_tracked_link_url"),)

    id: int | None = _id()
    campaign_id: str = Field(max_length=32)
    url: str = Field(max_length=2048)
    clicks: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class TrackingEvent(SQLModel, table=True):
    """A click or an open by a contact who consented to `tracking` (C35), per person. Opens
    never count as activity (C36); fetches judged a link scanner's are kept apart
    (`scanner`), not counted."""

    __tablename__ = "tracking_event"

    id: int | None = _id()
    delivery_id: int = Field(
        sa_column=sa.Column(
            BigId, sa.ForeignKey("delivery.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    contact_id: str = Field(max_length=32, index=True)
    campaign_id: str = Field(max_length=32, index=True)
    kind: str = Field(max_length=8)  # click | open
    link_id: int | None = Field(default=None, sa_column=sa.Column(BigId, nullable=True))
    at: datetime = _utc()
    scanner: str | None = Field(default=None, max_length=32)  # why it is not a person's


class InboundMessage(SQLModel, table=True):
    """Everything that comes back: mail the inbound listener received (bounces, complaints,
    auto-replies, unmapped mail) and relay events. Stored raw first, decided after (C20): a
    crash in between loses nothing, and the report stays here until reviewed or past its
    retention. `state` is pending -> decided, or review -> resolved | dismissed."""

    __tablename__ = "inbound_message"
    __table_args__ = (sa.Index("ix_inbound_message_state", "state", "id"),)

    id: int | None = _id()
    received_at: datetime = _utc()
    channel: str = Field(max_length=16)  # smtp | relay
    recipient: str = Field(max_length=320)  # our address it came to (with its token)
    raw: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))  # size-capped
    truncated: bool = Field(default=False)
    null_sender: bool = Field(default=False)  # MAIL FROM:<>, as bounces come (not who sent it)
    state: str = Field(max_length=16)
    verdict: str | None = Field(default=None, max_length=16)  # returns.table.Verdict
    rule: str | None = Field(default=None, max_length=100)  # the row that decided, or why review
    form: str | None = Field(default=None, max_length=16)  # dsn | arf | prose | relay ...
    status_code: str | None = Field(default=None, max_length=16)
    diagnostic: str | None = Field(default=None, max_length=300)  # addresses masked
    feedback_type: str | None = Field(default=None, max_length=32)
    reported_recipient: str | None = Field(default=None, max_length=320)  # recorded, not trusted
    # No foreign key, like the deliveries themselves: erasure (C33) deletes both.
    delivery_id: int | None = Field(
        default=None, sa_column=sa.Column(BigId, nullable=True, index=True)
    )
    event_key: str | None = Field(default=None, max_length=200, unique=True)  # relay idempotency
    decided_at: datetime | None = _utc(nullable=True)
    note: str | None = Field(default=None, max_length=500)  # a reviewer's


class RunDomainCount(SQLModel, table=True):
    """What one run met at one receiving domain: the counts the reputation guard reads (C37)."""

    __tablename__ = "run_domain_count"

    run_id: int = Field(sa_column=sa.Column(BigId, primary_key=True))
    domain: str = Field(primary_key=True, max_length=253)
    messages: int = Field(default=0)  # handed to the relay
    delivered: int = Field(default=0)  # accepted by the relay and not bounced back
    hard_bounces: int = Field(default=0)
    soft_bounces: int = Field(default=0)
    blocks: int = Field(default=0)  # sender-level refusals (C17), at send time or reported
    complaints: int = Field(default=0)


# ---- projections of the evidence ---------------------------------------------------------------
#
# Current state derived from the append-only evidence (consent events, orders), kept in the same
# transaction by every path that writes that evidence (evidence/projections.py), so that the
# audience query joins small indexed tables instead of ranking and aggregating the evidence for
# every contact each time. They hold facts, not policy: the purpose asked, the category map, the
# soft-opt-in window and the moment are applied by the query.


class CurrentConsent(SQLModel, table=True):
    """Per contact and purpose, the latest valid consent event by capture time (C2-C4, C31)."""

    __tablename__ = "current_consent"

    contact_id: str = Field(
        sa_column=sa.Column(
            sa.String(32), sa.ForeignKey("contact.id", ondelete="CASCADE"), primary_key=True
        )
    )
    purpose: str = Field(primary_key=True, max_length=64)
    consent_event_id: int = Field(sa_column=sa.Column(BigId, nullable=False))
    granted: bool
    captured_at: datetime = _utc()


class PurchaseCoverage(SQLModel, table=True):
    """Per contact and category bought, the latest qualifying order (C6: completed, opt-out
    offered and not used) placed with the contact's current address."""

    __tablename__ = "purchase_coverage"

    contact_id: str = Field(
        sa_column=sa.Column(
            sa.String(32), sa.ForeignKey("contact.id", ondelete="CASCADE"), primary_key=True
        )
    )
    category: str = Field(primary_key=True, max_length=64)
    order_id: str = Field(max_length=128)
    placed_at: datetime = _utc()


class PurchaseStanding(SQLModel, table=True):
    """Per contact, what its current address's orders say regardless of category: the first
    qualifying order (there is an order at all), and the order in which the opt-out was used
    at collection for that address, by this or any contact (C7). Only contacts with either."""

    __tablename__ = "purchase_standing"

    contact_id: str = Field(
        sa_column=sa.Column(
            sa.String(32), sa.ForeignKey("contact.id", ondelete="CASCADE"), primary_key=True
        )
    )
    first_order_at: datetime | None = _utc(nullable=True)
    opted_out_order_id: str | None = Field(default=None, max_length=128)
    soft_opt_in_ended_at: datetime | None = _utc(nullable=True)  # soft_opt_in_objection


# JSON documents: binary JSONB on PostgreSQL (read without parsing text), JSON text on SQLite.
JsonMap = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class MarketingProfile(SQLModel, table=True):
    """One row per contact with everything the audience query needs about it, derived from the
    projections above and the suppression list, so that an audience is one pass over this
    table (plus recent sends) instead of a join per purpose and category. Rebuilt per contact
    with them (evidence/projections.py); `suppressed` also when an entry is added or lifted, or
    the contact's hashes change (suppression/entries.py)."""

    __tablename__ = "marketing_profile"

    contact_id: str = Field(
        sa_column=sa.Column(
            sa.String(32), sa.ForeignKey("contact.id", ondelete="CASCADE"), primary_key=True
        )
    )
    suppressed: bool  # an active suppression entry matches the address (C16, C21-C22)
    first_order_at: datetime | None = _utc(nullable=True)  # from purchase_standing
    opted_out_order_id: str | None = Field(default=None, max_length=128)  # C7
    soft_opt_in_ended_at: datetime | None = _utc(nullable=True)  # the person ended it (C38)
    # purpose -> consent event id of the current grant (no key: no consent now)
    consents: dict[str, int] | None = Field(default=None, sa_column=sa.Column(JsonMap))
    # category -> latest qualifying order placed with the current address (purchase_coverage):
    # when, in microseconds since the epoch (compared as numbers), and which order
    covered_at: dict[str, int] | None = Field(default=None, sa_column=sa.Column(JsonMap))
    covered_by: dict[str, str] | None = Field(default=None, sa_column=sa.Column(JsonMap))


class StaffUser(SQLModel, table=True):
    """A person who uses the console with their own account (C39); never a contact."""

    __tablename__ = "staff_user"

    id: str = Field(primary_key=True, max_length=32)
    email: str = Field(max_length=254, unique=True)
    role: str = Field(max_length=16)  # marketer | admin
    password_hash: str = Field(max_length=200)  # argon2id (campaigns/staff.py)
    failed_logins: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    last_failed_at: datetime | None = _utc(nullable=True)
    created_at: datetime = _utc()


class StaffSession(SQLModel, table=True):
    """A logged-in browser: the cookie's token is kept only as its SHA-256."""

    __tablename__ = "staff_session"

    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(
        sa_column=sa.Column(
            sa.String(32), sa.ForeignKey("staff_user.id", ondelete="CASCADE"), nullable=False
        )
    )
    csrf: str = Field(max_length=64)  # every state-changing form carries it
    created_at: datetime = _utc()
    last_seen_at: datetime = _utc()


class AuditEntry(SQLModel, table=True):
    """What a staff member did, to what (C39): append-only, read by admins."""

    __tablename__ = "audit_log"

    id: int | None = _id()
    at: datetime = _utc(index=True)
    user_id: str = Field(max_length=32)  # kept when the account goes: the log outlives it
    action: str = Field(max_length=64)  # login, logout, campaign.schedule, contact.erase ...
    subject_kind: str | None = Field(default=None, max_length=32)  # campaign | contact
    subject_id: str | None = Field(default=None, max_length=64)


class SendingProcess(SQLModel, table=True):
    """A worker that is alive (it beats every few seconds): the relay's limits are shared
    among the live ones, so `[delivery] connections` and `rate_per_second` are one limit for
    all workers on all hosts, not one per process."""

    __tablename__ = "sending_process"

    id: str = Field(primary_key=True, max_length=100)  # MAILER_WORKER_ID, else host:pid
    seen_at: datetime = _utc(index=True)


class WireLog(SQLModel, table=True):
    """The wire journal: per handed-over batch, its deliveries in order and, per position,
    whether it may be on the wire and what the relay answered. Written outside the handoff
    transaction, so it outlives a kill -9 (mailer/delivery/journal.py). On SQLite it lives in
    a file of its own beside the database (the handoff holds the database's one write lock);
    this table is then empty."""

    __tablename__ = "wire_log"

    key: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    written_at: datetime = _utc()
    ids: str = Field(sa_type=sa.Text)  # JSON: the delivery ids, in the order they are sent
    states: str = Field(sa_type=sa.Text)  # one character per position (see the journal)
    details: str | None = Field(default=None, sa_type=sa.Text)  # JSON: position -> reply
