"""The record of processing activities (GDPR art. 30), generated from the configuration the
service runs with, so that it cannot drift from what the service does: the purposes are the
configured ones, the retention periods the configured ones, the recipient the relay it sends
through. `GET /api/v1/processing-record` gives it as JSON, `python -m mailer
processing-record` as Markdown for the controller's register."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from campaigns.config import BusinessConfig
from campaigns.rights.registry import HOLDINGS

_BASES = {
    "consent": "consent (GDPR 6(1)(a); e-privacy: Belgian Code of Economic Law XII.13)",
    "customer": "the customer exception for similar products of the seller's own"
    " (e-privacy directive 13(2); XII.13 and the royal decree of 4 April 2003), legitimate"
    " interest (GDPR 6(1)(f)) with an objection in every mail",
    "tracking": "consent (e-privacy directive 5(3)), its own unticked choice",
}

_SECURITY = (
    "the suppression list keys addresses by HMAC-SHA256 under a secret, so it outlives an"
    " erasure without holding the address (C21)",
    "API keys are stored hashed and scoped (shop, marketer, relay, admin)",
    "links in mail carry HMAC-signed tokens; the one-click unsubscribe cannot be forged (C24)",
    "logs name no address and no token; database errors are logged without their parameters",
    "erasure deletes every table of the registry of personal data in one transaction (C33)",
)


@dataclass(frozen=True)
class RelayInfo:
    """Where the mail goes out: the recipient of the addresses (a processor)."""

    host: str
    tls: str
    dkim_selector: str | None = None


def processing_record(config: BusinessConfig, relay: RelayInfo) -> dict[str, Any]:
    sender, marketing, retention = config.sender, config.marketing, config.retention
    purposes = []
    for purpose in marketing.purposes:
        if purpose == "tracking":
            bases = [_BASES["tracking"]]
            what = (
                "consent to per-person clicks and opens in marketing mail (asked for; the"
                " service does not measure them yet)"
            )
        else:
            bases = [_BASES["consent"]]
            if purpose not in marketing.third_party_purposes:
                bases.append(_BASES["customer"])
            what = f"marketing mail for the purpose '{purpose}'"
        purposes.append({"purpose": purpose, "processing": what, "legal_bases": bases})
    purposes.append(
        {
            "purpose": "objections and delivery failures",
            "processing": "the suppression list, the acknowledgement of an opt-out, bounce and"
            " complaint handling",
            "legal_bases": ["legal obligation to honour an objection (GDPR 6(1)(c), 21(3))"],
        }
    )
    return {
        "controller": {
            "name": sender.legal_name,
            "address": sender.address,
            "enterprise_number": sender.enterprise_number,
            "contact": sender.contact_email,
            "privacy_notice": sender.privacy_url,
        },
        "purposes": purposes,
        # The registry's own words: a table added there is in the record too.
        "categories_of_data": [h.about for h in HOLDINGS if h.exported_as],
        "categories_of_people": [
            "customers of the shop (orders, and the customer exception)",
            "people who gave consent to a marketing purpose (checkout, sign-up form)",
            "people who asked to sign up and have not confirmed yet",
        ],
        "recipients": [
            {
                "who": f"the SMTP relay {relay.host} (processor)",
                "what": "address, name and the message of each mail sent",
                "tls": relay.tls,
            }
        ],
        "transfers_outside_the_eea": "none by the service itself; the relay's location decides:"
        " name it here when it is outside the EEA",
        "retention": {
            "contacts_without_basis_or_activity_months": retention.inactive_contact_months,
            "delivery_log_months": retention.delivery_log_months,
            "bounce_and_complaint_report_months": retention.report_months,
            "unconfirmed_signup_days": retention.unconfirmed_signup_days,
            "tracking_event_months": retention.tracking_months,
            "rights_requests": "kept without end, without the person once erased: the record"
            " that each request was met",
            "customer_exception_months_after_the_last_order": marketing.soft_opt_in_months,
            "suppression_list": "kept without end: an objection must be honoured for as long"
            " as the shop mails (C21); it holds a keyed hash, not the address",
        },
        "security_measures": [
            *_SECURITY,
            f"outgoing mail is DKIM-signed (selector {relay.dkim_selector})"
            if relay.dkim_selector
            else "outgoing mail is not DKIM-signed (MAILER_DKIM_SELECTOR is not set)",
            f"the connection to the relay: TLS mode {relay.tls}",
        ],
    }


def as_markdown(record: dict[str, Any]) -> str:
    """The record as a page of the controller's register."""
    c = record["controller"]
    lines = [
        "# Record of processing: marketing email",
        "",
        f"**Controller:** {c['name']}, {c['address']} ({c['enterprise_number']});"
        f" contact {c['contact']}; privacy notice {c['privacy_notice']}.",
        "",
        "## Purposes and legal bases",
        "",
    ]
    for purpose in record["purposes"]:
        lines.append(f"- **{purpose['purpose']}**: {purpose['processing']}.")
        lines.extend(f"  - {basis}" for basis in purpose["legal_bases"])
    lines += ["", "## Categories of data", ""]
    lines += [f"- {text}" for text in record["categories_of_data"]]
    lines += ["", "## Categories of people", ""]
    lines += [f"- {text}" for text in record["categories_of_people"]]
    lines += ["", "## Recipients", ""]
    lines += [f"- {r['who']}: {r['what']} (TLS: {r['tls']})" for r in record["recipients"]]
    lines += ["", "## Transfers outside the EEA", "", record["transfers_outside_the_eea"]]
    lines += ["", "## Retention", ""]
    for name, value in record["retention"].items():
        lines.append(f"- {name.replace('_', ' ')}: {value}")
    lines += ["", "## Security measures", ""]
    lines += [f"- {text}" for text in record["security_measures"]]
    return "\n".join(lines) + "\n"
