"""Consent evidence: what makes a recorded decision count (C2, C4, C5), and its ledger rows."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from campaigns.evidence.inputs import ConsentEvidenceIn

# A web-form sign-up is consent only after our double opt-in (C5): use POST /api/v1/signups.
WEB_FORM_CHANNELS = frozenset({"web_form", "signup", "signup_form", "newsletter_form", "popup"})
CLOCK_SKEW = timedelta(minutes=5)


def refusal_reason(evidence: ConsentEvidenceIn, now: datetime) -> str | None:
    """Why this event gives no basis, or None if it counts.

    A withdrawal always counts, whatever evidence comes with it: an objection must never be
    lost for want of paperwork.
    """
    if not evidence.granted:
        return None
    if evidence.capture_method != "checkbox":
        return evidence.capture_method  # terms_acceptance, contest_entry, silence (C2)
    if evidence.checkbox_prechecked is None:
        return "checkbox_state_unknown"
    if evidence.checkbox_prechecked:
        return "prechecked_box"
    if evidence.captured_at is None:
        return "missing_captured_at"
    if not evidence.wording:
        return "missing_wording"
    if not evidence.wording_version:
        return "missing_wording_version"
    if not evidence.channel and not evidence.url:
        return "missing_channel"
    if evidence.channel in WEB_FORM_CHANNELS:
        return "double_opt_in_required"
    if evidence.captured_at > now + CLOCK_SKEW:
        return "captured_in_future"
    return None


def consent_row(
    evidence: ConsentEvidenceIn,
    *,
    contact_id: str,
    now: datetime,
    capture_method: str | None = None,
) -> dict[str, Any]:
    """The ledger row for one decision. Identical decisions get the same fingerprint."""
    reason = refusal_reason(evidence, now)
    captured_at = evidence.captured_at
    if captured_at is None and not evidence.granted:
        captured_at = now  # a withdrawal takes effect when we learn of it
    row: dict[str, Any] = {
        "purpose": evidence.purpose,
        "granted": evidence.granted,
        "captured_at": captured_at,
        "wording": evidence.wording,
        "wording_version": evidence.wording_version,
        "channel": evidence.channel,
        "url": evidence.url,
        "ip": None if evidence.ip is None else str(evidence.ip),
        "checkbox_prechecked": evidence.checkbox_prechecked,
        "capture_method": capture_method or evidence.capture_method,
        "valid": reason is None,
        "refused_reason": reason,
    }
    row["fingerprint"] = _fingerprint(row)
    row["contact_id"] = contact_id
    row["recorded_at"] = now
    return row


def _fingerprint(row: dict[str, Any]) -> str:
    # A withdrawal sent without a capture time is stamped with our clock, so each one counts:
    # deduplicating it could swallow a second objection after a later grant.
    # JSON of the evidence fields in a fixed order: unambiguous, whatever the text contains.
    material = [None if row[name] is None else str(row[name]) for name in _FINGERPRINTED]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()


_FINGERPRINTED = (
    "purpose",
    "granted",
    "captured_at",
    "wording",
    "wording_version",
    "channel",
    "url",
    "ip",
    "checkbox_prechecked",
    "capture_method",
)
