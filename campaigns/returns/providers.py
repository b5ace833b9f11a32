"""Relays' own notification formats, read as relay events (API.md "Bounces and complaints").

Amazon SES: its bounce, complaint, delivery and delay notifications, as SNS posts them to an
HTTP(S) subscription (the SNS envelope, its `Message` the SES notification as a JSON string),
or bare (an event destination that posts the notification itself, or EventBridge's `detail`).
SES rewrites the headers of what it sends, and gives the original ones in
`mail.commonHeaders`: its `messageId` is our signed Message-ID, which names the delivery. What
SES says is then decided by the same table as a mailed report (C17-C19): its `status` and
`diagnosticCode` first, its bounce type only when they say nothing readable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from campaigns.errors import InvalidInput
from campaigns.returns.inputs import RelayEventIn

_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


@dataclass
class SesNotice:
    """What one SES post says: events to decide, kinds that need nothing (with why), and for
    an SNS subscription the URL an operator opens once to confirm it."""

    events: list[RelayEventIn] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    subscribe_url: str | None = None


def read_ses(body: bytes) -> SesNotice:
    """An SES post, read; a body that is not one is a clear error (422), and nothing changes."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("the body is not JSON", field="body") from exc
    if not isinstance(document, dict):
        raise InvalidInput("the body is not a JSON object", field="body")
    envelope = document.get("Type")
    if envelope in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        url = document.get("SubscribeURL")
        return SesNotice(subscribe_url=url if isinstance(url, str) else None)
    if envelope == "Notification":
        try:
            document = json.loads(document.get("Message") or "")
        except (TypeError, ValueError) as exc:
            raise InvalidInput("the SNS Message is not JSON", field="Message") from exc
    elif isinstance(document.get("detail"), dict):  # EventBridge
        document = document["detail"]
    if not isinstance(document, dict):
        raise InvalidInput("the SES notification is not a JSON object", field="Message")
    return _notification(document)


def _notification(note: Mapping[str, Any]) -> SesNotice:
    kind = note.get("notificationType") or note.get("eventType")
    mail = _object(note, "mail")
    headers = _object(mail, "commonHeaders")
    # Ours when SES kept the original headers; else SES's own id, which maps to no delivery
    # and goes to review rather than being guessed from an address.
    message_id = _text(headers.get("messageId")) or _text(mail.get("messageId"))
    if kind == "Bounce":
        bounce = _object(note, "bounce")
        recipient = _first(bounce.get("bouncedRecipients"))
        hard = bounce.get("bounceType") == "Permanent"
        event = _event(
            message_id,
            "hard" if hard else "soft",
            bounce.get("timestamp") or mail.get("timestamp"),
            status=recipient.get("status"),
            diagnostic=recipient.get("diagnosticCode") or bounce.get("bounceSubType"),
        )
    elif kind == "Complaint":
        complaint = _object(note, "complaint")
        feedback = _text(complaint.get("complaintFeedbackType"))
        if feedback not in (None, "abuse"):  # not-spam, auth-failure, ...: no objection (C19)
            return SesNotice(ignored=[f"complaint feedback type {feedback}"[:80]])
        event = _event(message_id, "complaint", complaint.get("timestamp"))
    elif kind == "Delivery":
        delivery = _object(note, "delivery")
        event = _event(
            message_id,
            "delivery",
            delivery.get("timestamp"),
            diagnostic=delivery.get("smtpResponse"),
        )
    elif kind == "DeliveryDelay":  # still trying: a soft bounce (C18)
        delay = _object(note, "deliveryDelay")
        recipient = _first(delay.get("delayedRecipients"))
        event = _event(
            message_id,
            "soft",
            delay.get("timestamp"),
            status=recipient.get("status"),
            diagnostic=recipient.get("diagnosticCode") or delay.get("delayType"),
        )
    else:  # Send, Reject, Open, Click, ...: nothing the return channel acts on
        return SesNotice(ignored=[f"SES {kind or 'notification without a type'}"[:80]])
    return SesNotice(events=[event])


def _event(
    message_id: str | None,
    kind: str,
    timestamp: object,
    *,
    status: object = None,
    diagnostic: object = None,
) -> RelayEventIn:
    status_text = _text(status)
    try:
        return RelayEventIn(
            message_id=message_id[:300] if message_id else None,
            type=kind,
            status=status_text if status_text and _STATUS.match(status_text) else None,
            diagnostic=(_text(diagnostic) or "")[:1000] or None,
            timestamp=timestamp,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error.get("loc", ())) or "Message"
        raise InvalidInput(
            f"not an SES notification: {where}: {error['msg']}", field=where
        ) from exc


def _object(parent: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = parent.get(name)
    return value if isinstance(value, dict) else {}


def _first(value: object) -> Mapping[str, Any]:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return {}


def _text(value: object) -> str | None:
    """A value on one line, or None: relays' strings are anyone's."""
    if not isinstance(value, str):
        return None
    return " ".join(value.replace("\x00", " ").split()) or None
