"""Reading a report as mail systems really write it (C17-C20).

Three shapes carry most of them: an RFC 3464 DSN (`message/delivery-status`), an RFC 5965
complaint (`message/feedback-report`), and an MTA's own prose with the returned message below it
(Exim, qmail, old Sendmail, Exchange, Yahoo, ...), for which flufl.bounce's detectors know who
failed and whether for good. What the reading yields is facts (a status code, the diagnostic
text, the feedback type, the references to our own mail found in it); what they mean is the
decision table's (`table.py`).

The standard `email` package reads the MIME, in its lenient compat32 mode: reports come with
long lines, 8-bit bytes, wrong charsets and broken boundaries, and must still be read.
"""

from __future__ import annotations

import email.feedparser
import re
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32
from typing import Any, Literal

from flufl.bounce import all_failures

from campaigns.returns.table import status_in


class _BoundaryMatcher:
    """What `email.feedparser` compiles for each MIME boundary, without compiling: the
    standard parser builds `(?P<sep>--BOUNDARY)(?P<end>--)?(?P<ws>[ \\t]*)(?P<linesep>...)?$`
    for every multipart it meets, and boundaries are unique per message, so every report
    (a DSN, an ARF, the returned mail in them) paid two or three regex compilations: a third
    of reading it. The same match: the separator as a string, the rest by one pattern."""

    _REST = re.compile(r"(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$")
    __slots__ = ("separator",)

    def __init__(self, separator: str) -> None:
        self.separator = separator

    def match(self, line: str) -> re.Match[str] | None:
        if not line.startswith(self.separator):
            return None
        return self._REST.match(line, len(self.separator))


class _FeedparserRe:
    """`re` as email.feedparser sees it: its boundary pattern (recognised by its exact text, so
    a Python whose parser changed falls back to compiling) becomes a `_BoundaryMatcher`."""

    _HEAD, _TAIL = "(?P<sep>", r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
    _UNESCAPE = re.compile(r"\\(.)", re.DOTALL)  # undoes re.escape

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    def compile(self, pattern: Any, flags: int = 0) -> Any:
        if (
            flags == 0
            and isinstance(pattern, str)
            and pattern.startswith(self._HEAD)
            and pattern.endswith(self._TAIL)
        ):
            escaped = pattern[len(self._HEAD) : -len(self._TAIL)]
            return _BoundaryMatcher(self._UNESCAPE.sub(r"\1", escaped))
        return re.compile(pattern, flags)


email.feedparser.re = _FeedparserRe()  # type: ignore[attr-defined]

Form = Literal["dsn", "arf", "auto_reply", "prose", "unreadable"]


@dataclass(frozen=True)
class Reading:
    form: Form
    status: str | None = None  # RFC 3463 code, the DSN's or the first one in the prose
    action: str | None = None  # DSN Action: failed | delayed | delivered | relayed | expanded
    diagnostic: str = ""  # the text the table's phrases read
    reported_recipient: str | None = None  # Final-Recipient / Original-Rcpt-To: recorded only
    feedback_type: str | None = None  # ARF Feedback-Type
    permanence: Literal["temporary", "permanent"] | None = None  # flufl.bounce's judgement
    references: tuple[str, ...] = ()  # where the report names our mail: VERP, Message-ID ...
    looks_like_report: bool = True  # prose: from a mailer daemon, a bounce's subject, detected


def read_report(raw: bytes) -> Reading:
    try:
        message = message_from_bytes(raw, policy=compat32)
    except Exception:  # the parser is lenient; this is a report it cannot even split
        return Reading("unreadable")
    parts = _own_parts(message)
    references = _references(parts)
    feedback = _first_part(parts, "message/feedback-report")
    if feedback is not None:
        return _read_arf(feedback, references)
    status_part = _first_part(parts, "message/delivery-status") or _first_part(
        parts,
        "message/global-delivery-status",  # RFC 6533, for SMTPUTF8 mail
    )
    if status_part is None and _is_delivery_report(message):
        status_part = _status_text_part(parts)
    if status_part is not None:
        reading = _read_dsn(parts, status_part, references)
        if reading is not None:
            return reading
    if _is_auto_reply(message):
        return Reading("auto_reply", references=references)
    forwarded = _forwarded_report(parts)
    if forwarded is not None:  # a DSN passed on inside another message (Exchange does this)
        return read_report(forwarded.as_bytes())
    return _read_prose(message, parts, references)


def _forwarded_report(parts: list[Message]) -> Message | None:
    for part in parts[1:]:
        payload = part.get_payload()
        if part.get_content_type() == "message/rfc822" and isinstance(payload, list) and payload:
            inner = payload[0]
            if isinstance(inner, Message) and inner.get_content_type() == "multipart/report":
                return inner
    return None


# ---- the shapes ----------------------------------------------------------------------------


def _read_dsn(parts: list[Message], part: Message, references: tuple[str, ...]) -> Reading | None:
    blocks = _field_blocks(part)
    recipients = [b for b in blocks[1:] if b.get("Action") or b.get("Status")] or [
        b for b in blocks if b.get("Action") or b.get("Status")
    ]
    if not recipients:
        return None
    # One recipient per message (VERP); with several, the first that failed speaks.
    failed = [b for b in recipients if (b.get("Action") or "").strip().lower() == "failed"]
    block = (failed or recipients)[0]
    action = _clean(block.get("Action")).lower() or None
    diagnostic = _unfold(block.get("Diagnostic-Code"))
    diagnostic = re.sub(r"^\s*smtp\s*;\s*", "", diagnostic, flags=re.IGNORECASE)
    status = _code(_clean(block.get("Status")))
    human = _human_text(parts)
    detail = status_in(diagnostic) or status_in(human, success=False)
    if (
        detail is not None
        and (status is None or _generic(status))
        and detail[0] == (status or detail)[0]
    ):
        status = detail  # "Status: 5.0.0" with "550 5.1.1 user unknown" in the diagnostic
    diagnostic = f"{diagnostic}\n{human}" if diagnostic else human
    recipient = _address_field(block.get("Final-Recipient") or block.get("Original-Recipient"))
    return Reading(
        "dsn",
        status=status,
        action=action,
        diagnostic=diagnostic,
        reported_recipient=recipient,
        references=references,
    )


def _read_arf(part: Message, references: tuple[str, ...]) -> Reading:
    blocks = _field_blocks(part)
    fields = blocks[0] if blocks else Message()
    feedback_type = _clean(fields.get("Feedback-Type")).lower() or None
    verp = _address_field(fields.get("Original-Mail-From"))
    return Reading(
        "arf",
        feedback_type=feedback_type,
        reported_recipient=_address_field(fields.get("Original-Rcpt-To")),
        references=((verp,) if verp else ()) + references,
    )


def _read_prose(message: Message, parts: list[Message], references: tuple[str, ...]) -> Reading:
    text = _human_text(parts)
    if not text.strip():
        return Reading("unreadable", references=references)
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector tripping over a malformed part: read without it
        temporary, permanent = frozenset(), frozenset()
    failed = sorted(permanent or temporary)
    permanence: Literal["temporary", "permanent"] | None = (
        "permanent" if permanent else "temporary" if temporary else None
    )
    return Reading(
        "prose",
        status=status_in(text, success=False),
        diagnostic=text,
        reported_recipient=failed[0].decode("utf-8", "replace") if failed else None,
        permanence=permanence,
        references=references,
        looks_like_report=bool(failed)
        or bool(_DAEMON.search(str(message.get("From", ""))))
        or bool(_BOUNCE_SUBJECT.search(str(message.get("Subject", "")))),
    )


# ---- what the parts say ----------------------------------------------------------------------


def _first_part(parts: list[Message], content_type: str) -> Message | None:
    for part in parts:
        if part.get_content_type() == content_type:
            return part
    return None


def _own_parts(message: Message) -> list[Message]:
    """The report's parts, not descending into a returned message (that is our own mail)."""
    parts = [message]
    if message.is_multipart() and message.get_content_type() != "message/rfc822":
        payload = message.get_payload()
        if isinstance(payload, list):
            for child in payload:
                if not isinstance(child, Message):
                    continue
                kind = child.get_content_type()
                if kind.startswith("message/") or kind == "text/rfc822-headers":
                    parts.append(child)  # a status block or the returned message: not entered
                else:
                    parts.extend(_own_parts(child))
    return parts


def _is_delivery_report(message: Message) -> bool:
    return (
        message.get_content_type() == "multipart/report"
        and str(message.get_param("report-type") or "").lower() == "delivery-status"
    )


def _status_text_part(parts: list[Message]) -> Message | None:
    """A DSN whose status part was labelled text/plain (some MTAs): the part with the fields."""
    for part in parts[1:]:
        if part.get_content_maintype() == "text":
            text = _text_of(part)
            if re.search(r"^(Status|Action):", text, re.MULTILINE | re.IGNORECASE):
                return part
    return None


def _field_blocks(part: Message) -> list[Message]:
    """The header-like blocks of a delivery-status or feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list) and part.get_content_type() == "message/delivery-status":
        return [b for b in payload if isinstance(b, Message)]
    text = _text_of(part) if not isinstance(payload, list) else _blocks_text(payload)
    parser = HeaderParser(policy=compat32)
    blocks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    return [parser.parsestr(block.strip() + "\n") for block in blocks if block.strip()]


def _blocks_text(payload: list[Any]) -> str:
    out = []
    for block in payload:
        if isinstance(block, Message):
            out.append("\n".join(f"{k}: {v}" for k, v in block.items()))
            body = block.get_payload()
            if isinstance(body, str) and body.strip():
                out.append(body)
    return "\n\n".join(out)


_RETURNED = re.compile(
    r"^\s*[-=_*]{2,}.*(original message|copy of the message|unsent message|returned message"
    r"|message (headers? )?follow|below this line|undelivered message|rfc822)"
    r"|^\s*(original message follows|--- below this line is a copy)"
    r"|^\s*Received: from ",
    re.IGNORECASE | re.MULTILINE,
)


# Lines where a report quotes our own mail's headers (Exchange: "Subject: ..."): our subject
# may say anything, and must not be read as the failure.
_QUOTED_HEADER = re.compile(r"^[ \t]*(subject|to|cc|from|sent|date)[ \t]*:.*$", re.I | re.M)


def _human_text(parts: list[Message]) -> str:
    """The text a person reads: text parts of the report, the returned message cut off."""
    chunks: list[str] = []
    for part in parts:
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if part.get_content_type() == "text/rfc822-headers":
            continue
        text = _text_of(part)
        if part.get_content_subtype() == "html":
            text = re.sub(r"<[^>]+>", " ", text)
        cut = _RETURNED.search(text)
        text = text[: cut.start()] if cut else text
        chunks.append(_QUOTED_HEADER.sub("", text))
    return "\n".join(chunks)[:20_000]


def _text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwoord|answer)|autoreply|out of (the )?office"
    r"|absence|afwezig|abwesenheit|vacation|on leave|r[ée]ponse automatique|automatisch"
    r"|auto:)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|not delivered|could not be delivered|delivery (status|failure|report|notification)"
    r"|failure notice|returned mail|mail delivery|delivery has failed|non remis|unzustellbar"
    r"|onbestelbaar|niet afgeleverd|bounce",
    re.IGNORECASE,
)
_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery|mail administrator", re.IGNORECASE)


def _is_auto_reply(message: Message) -> bool:
    """RFC 3834 and what vacation programs set; a bounce from a mailer daemon is not one."""
    if _DAEMON.search(str(message.get("From", ""))):
        return False
    submitted = str(message.get("Auto-Submitted", "")).strip().lower()
    if submitted.startswith("auto-replied"):
        return True
    if any(message.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Autoresponder")):
        return True
    if str(message.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.search(str(message.get("Subject", ""))))


def _references(parts: list[Message]) -> tuple[str, ...]:
    """Where the report names mail we sent, most authoritative first: the returned message's
    envelope sender (our VERP address), its Message-ID, its unsubscribe address."""
    returned = [p for p in parts[1:] if p.get_content_type() in _RETURNED_TYPES]
    found: list[str] = []
    for part in returned:
        headers = _returned_headers(part)
        if headers is None:
            continue
        for name in ("Return-Path", "Message-ID", "List-Unsubscribe"):
            value = headers.get(name)
            if value:
                found.append(_unfold(str(value)))
    return tuple(found)


_RETURNED_TYPES = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers")


def _returned_headers(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    text = _text_of(part)
    return HeaderParser(policy=compat32).parsestr(text) if text else None


def _address_field(value: object) -> str | None:
    """`rfc822; someone@example.com` -> `someone@example.com`."""
    text = _clean(value)
    if not text:
        return None
    text = text.split(";", 1)[-1].strip().strip("<>").strip()
    return text[:320] or None


def _code(value: str) -> str | None:
    match = re.match(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})", value)
    return ".".join(match.groups()) if match else None


def _generic(status: str) -> bool:
    return status.endswith(".0") and status.split(".")[1] in ("0", "1", "2", "3", "4", "5")


def _clean(value: object) -> str:
    """A field's value on one line, without control characters (a NUL in a report's field
    must not reach a rule, a column or a log)."""
    return _CONTROL.sub("", _unfold(str(value))) if value is not None else ""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _unfold(value: object) -> str:
    return re.sub(r"\s+", " ", str(value or "")).strip()
