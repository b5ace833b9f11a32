"""What recipients do: unsubscribe (one-click, page, mailto), change preferences, confirm a
sign-up. Each objection is a suppression entry committed before the answer (objections.py: C13,
C14, C31); each preference change is a consent event (C31, C35)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from campaigns.acknowledgements import add_acknowledgements
from campaigns.audience.eligibility import (  # the same predicates as sending
    Basis,
    consent_for_purpose,
    current_bases,
)
from campaigns.context import Context
from campaigns.errors import InvalidInput
from campaigns.evidence.consent import consent_row
from campaigns.evidence.contacts import ingest_contacts
from campaigns.evidence.inputs import ConsentEvidenceIn, ContactIn, SignupIn, SourceIn
from campaigns.evidence.projections import append_consent_events, refresh_evidence
from campaigns.models import Contact, Delivery, MarketingProfile, Signup, SoftOptInObjection
from campaigns.objections import Addressee, follow_up_objections, take_objection
from campaigns.rights.requests import log_request
from campaigns.suppression.entries import active_entries, lift_unsubscribe
from campaigns.suppression.predicate import NEVER_MAILED_AGAIN

PREFERENCE_WORDING_VERSION = "preferences-1"


async def _to_acknowledge(session: AsyncSession, contact: Contact, ctx: Context) -> Addressee:
    """Who withdrew or ended a basis, with the acknowledgement stored in the same transaction
    (C15): no restart between the answer and the mail loses it."""
    ack = None
    if ctx.config.marketing.acknowledge_opt_outs:
        (ack,) = await add_acknowledgements(session, [contact.id], ctx.clock)
    return Addressee(contact.email, contact.name, contact.locale, ack)


@dataclass(frozen=True)
class Preferences:
    contact_id: str
    locale: str | None
    suppressed: bool
    purposes: dict[str, bool]  # purpose -> consent now
    # What the person is mailed under now, in the words of the page (C38): consents with their
    # dates, and the customer exception per order; none while suppressed.
    bases: list[Basis]
    soft_opt_in_ended_at: datetime | None  # when the person ended the customer exception

    @property
    def customer_bases(self) -> list[Basis]:
        return [basis for basis in self.bases if basis.kind == "soft_opt_in"]


async def preferences(session: AsyncSession, contact_id: str, ctx: Context) -> Preferences | None:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        return None
    state: dict[str, bool] = {}
    for purpose in ctx.config.marketing.purposes:
        consent = consent_for_purpose(purpose, [contact_id])
        state[purpose] = (
            await session.execute(sa.select(sa.func.count()).select_from(consent))
        ).scalar_one() > 0
    suppressed = bool(await active_entries(session, contact.email, ctx.hasher))
    bases = await current_bases(session, [contact_id], clock=ctx.clock, policy=ctx.config.marketing)
    ended = (
        await session.execute(
            sa.select(col(MarketingProfile.soft_opt_in_ended_at)).where(
                col(MarketingProfile.contact_id) == contact_id
            )
        )
    ).scalar_one_or_none()
    return Preferences(contact_id, contact.locale, suppressed, state, bases[contact_id], ended)


async def change_preferences(
    session: AsyncSession,
    contact_id: str,
    wanted: dict[str, bool],
    *,
    wording: dict[str, str],
    stop_all: bool,
    ctx: Context,
    end_soft_opt_in: bool = False,
) -> Addressee | None:
    """Apply the preference form: a grant or withdrawal event per changed purpose; an end of
    the customer exception (C38); "all marketing" is a suppression. Returns who to acknowledge
    when something was withdrawn or ended."""
    current = await preferences(session, contact_id, ctx)
    if current is None:
        return None
    contact = await session.get(Contact, contact_id)
    assert contact is not None
    if stop_all:
        entry = await take_objection(
            session, contact.email, channel="preference_center", campaign_id=None, ctx=ctx
        )
        if entry is None:
            return None  # suppressed already: one entry, one acknowledgement
        followed = await follow_up_objections(session, ctx, ids=[entry])
        return followed.to_acknowledge[0] if followed.to_acknowledge else None
    now = ctx.clock.now()
    rows = []
    withdrew = False
    for purpose, on in wanted.items():
        if purpose not in current.purposes or current.purposes[purpose] == on:
            continue
        withdrew = withdrew or not on
        evidence = ConsentEvidenceIn(
            purpose=purpose,
            granted=on,
            captured_at=now,
            wording=wording.get(purpose),
            wording_version=PREFERENCE_WORDING_VERSION,
            channel="preference_center",
            checkbox_prechecked=False,  # a grant here ticks a box that was unticked
        )
        rows.append(consent_row(evidence, contact_id=contact_id, now=now))
    await append_consent_events(session, rows)
    if end_soft_opt_in and current.soft_opt_in_ended_at is None:
        await end_customer_exception(session, contact_id, channel="preference_center", ctx=ctx)
        withdrew = True
    return await _to_acknowledge(session, contact, ctx) if withdrew else None


async def end_customer_exception(
    session: AsyncSession, contact_id: str, *, channel: str, ctx: Context
) -> None:
    """The person objects to mail under the customer exception alone (ePD 13(2), GDPR 21):
    from now no soft-opt-in basis, whatever they bought or buy; consents stand. Never
    commits."""
    session.add(
        SoftOptInObjection(contact_id=contact_id, channel=channel, objected_at=ctx.clock.now())
    )
    # An objection is a right exercised (GDPR 21): logged like access and erasure (C38).
    await log_request(
        session, contact_id, kind="objection", channel="page", actor="the person", clock=ctx.clock
    )
    await session.flush()
    await refresh_evidence(session, purchases_of=[contact_id])


async def create_signup(session: AsyncSession, data: SignupIn, ctx: Context) -> Signup | None:
    """Record a web-form sign-up (no basis yet). Returns None, sending nothing, when the
    address must never be mailed again (complaint, hard bounce, erasure)."""
    unknown = [p for p in data.purposes if p not in ctx.config.marketing.purposes]
    if unknown:
        raise InvalidInput(
            f"unknown purpose '{unknown[0]}'", field="purposes", reason="unknown_purpose"
        )
    entries = await active_entries(session, data.email, ctx.hasher)
    if any(entry.reason in NEVER_MAILED_AGAIN for entry in entries):
        return None
    signup = Signup(
        id=uuid.uuid4().hex,
        email=data.email,
        name=data.name,
        locale=data.locale,
        purposes=",".join(dict.fromkeys(data.purposes)),
        wording=data.wording,
        wording_version=data.wording_version,
        url=data.url,
        ip=None if data.ip is None else str(data.ip),
        created_at=ctx.clock.now(),
    )
    session.add(signup)
    await session.flush()
    return signup


async def confirm_signup(session: AsyncSession, signup_id: str, ctx: Context) -> str | None:
    """The double opt-in link was used (C5): the contact gets consent for each purpose, with
    the sign-up as evidence and the confirmation time; an unsubscribe suppression of the
    address is lifted (C22). Idempotent. Returns the contact id, or None if unknown."""
    signup = await session.get(Signup, signup_id)
    if signup is None:
        return None
    now = ctx.clock.now()
    if any(
        e.reason in NEVER_MAILED_AGAIN
        for e in await active_entries(session, signup.email, ctx.hasher)
    ):
        return None
    item = ContactIn(
        email=signup.email,
        name=signup.name,
        locale=signup.locale,
        source=SourceIn(channel="web_form", first_party=True, url=signup.url),
    )
    (outcome,) = await ingest_contacts(session, [(0, item)], ctx)
    assert outcome.contact_id is not None
    if signup.confirmed_at is None:
        signup.confirmed_at = now
        rows = []
        for purpose in signup.purposes.split(","):
            evidence = ConsentEvidenceIn(
                purpose=purpose,
                granted=True,
                captured_at=signup.created_at,
                wording=signup.wording,
                wording_version=signup.wording_version,
                url=signup.url,
                checkbox_prechecked=False,
                ip=signup.ip,
            )
            row = consent_row(
                evidence, contact_id=outcome.contact_id, now=now, capture_method="double_opt_in"
            )
            rows.append({**row, "confirmed_at": now})
        await append_consent_events(session, rows)
        await lift_unsubscribe(session, signup.email, clock=ctx.clock, hasher=ctx.hasher)
        await session.flush()
    return outcome.contact_id


async def signup_addressee(session: AsyncSession, signup_id: str) -> Addressee | None:
    signup = await session.get(Signup, signup_id)
    return None if signup is None else Addressee(signup.email, signup.name, signup.locale)


async def locale_of_delivery(session: AsyncSession, delivery_id: int) -> str | None:
    return (
        await session.execute(
            sa.select(col(Contact.locale))
            .join(Delivery, col(Delivery.contact_id) == col(Contact.id))
            .where(col(Delivery.id) == delivery_id)
        )
    ).scalar_one_or_none()
