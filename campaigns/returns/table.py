"""The decision table: what a failure report or an SMTP reply says about an address (C17, C18).

One list of rows, read top to bottom; the first row that matches decides. A row names an RFC
3463 status code (a prefix: "5.7." is every 5.7.x), a diagnostic phrase (a regular expression,
case-insensitive), or both. The order is the policy:

1. Specific status codes first: a code says more than the words around it ("5.1.1" is about the
   address whatever the text says; "5.7.x" is policy whatever it blames).
2. Then phrases, for reports whose code is generic ("5.0.0", "5.5.0", a bare "550") or absent:
   what real MTAs write instead of a code.
3. Then the class of the code: a 4xx is temporary (C18); a permanent failure that says nothing
   readable goes to review, nothing guessed (C20).

A new MTA's wording is one row, and each row has a test (tests/unit/test_return_table.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from campaigns.addresses import without_addresses


class Verdict(StrEnum):
    HARD = "hard"  # about the address, permanent: suppressed as `hard_bounce` (C17)
    BLOCK = "block"  # about the sender or the message: counted, nothing suppressed (C17, C37)
    SOFT = "soft"  # temporary: `soft_bounce_limit` in a row suppress (C18)
    DELIVERED = "delivered"  # a success report (2.x.x): no bounce (C18)
    AUTO_REPLY = "auto_reply"  # vacation, out of office (RFC 3834): no bounce (C18)
    COMPLAINT = "complaint"  # ARF abuse / opt-out: suppressed as `complaint` (C19)
    FEEDBACK = "feedback"  # other ARF types (auth-failure, not-spam ...): recorded only (C19)
    REVIEW = "review"  # unreadable, or maps to no delivery: a person decides (C20)


@dataclass(frozen=True)
class Row:
    name: str
    verdict: Verdict
    status: str | None = None  # an RFC 3463 code or prefix of one
    phrase: str | None = None  # a regular expression over the diagnostic text
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.phrase is not None:
            object.__setattr__(self, "_pattern", re.compile(self.phrase, re.IGNORECASE))

    def matches(self, status: str | None, text: str) -> bool:
        if self.status is not None and not _code_has_prefix(status, self.status):
            return False
        return self._pattern is None or self._pattern.search(text) is not None


def _code_has_prefix(status: str | None, prefix: str) -> bool:
    if status is None:
        return False
    if prefix.endswith("."):
        return status.startswith(prefix)
    return status == prefix


H, B, S, D, R = Verdict.HARD, Verdict.BLOCK, Verdict.SOFT, Verdict.DELIVERED, Verdict.REVIEW

MAILBOX_FULL = (
    r"mail ?box (is )?full|over ?quota|quota (exceeded|full)|exceeded (the |their )?"
    r"(storage|quota)|insufficient (disk |system )?(space|storage)|mailbox size limit"
    r"|not enough (storage|space)|out of (disk )?space|\bquota\b|mail ?folder is full"
    r"|box (is )?full|space not enough"
)
SENDER_LEVEL = (
    r"\bspam\b|black ?list|block ?list|\bblocked\b|\brbl\b|spamhaus|spamcop|\bbarracuda\b"
    r"|reputation"
    r"|\bpolicy\b|dmarc|\bspf\b|dkim|authenticat|unauthenticated|not authori[sz]ed"
    r"|relay(ing)? (access )?(denied|not permitted|prohibited)|unable to relay|we do not relay"
    r"|rate limit|too many (messages|connections|recipients)|message (size |is )?too (big|large)"
    r"|size limit|exceeds? (the )?(maximum |max )?(message )?size|content (was )?rejected"
    r"|\bvirus\b|malware|suspicious|unsolicited|bulk mail|not accepting (mail|messages) from"
    r"|(maximum|max) (incoming |inbound )?message size|message size"
    r"|\bsender\b.{0,40}not (listed|allowed|permitted)|your (ip|server|host|domain|mail server)"
    r"|\bptr\b|reverse dns|\brdns\b|whitelist|allowed senders"
    r"|e?helo (command )?(rejected|invalid|not)|(invalid|bad) e?helo"
)
ADDRESS_GONE = (
    r"user unknown|unknown user|no such (user|mailbox|recipient|person|address|account|local)"
    r"|(user|mailbox|address|account|recipient)( \S+)? (does not|doesn't|did not) exist"
    r"|does not exist|doesn't exist|isn't a valid|not a valid (user|recipient|mailbox|address)"
    r"|invalid (recipient|mailbox|address|user|destination)|unknown (recipient|mailbox|address|"
    r"local[- ]part|alias)|recipient (address )?(rejected|unknown|not found|invalid)"
    r"|address rejected|mailbox (is )?(unavailable|not found|disabled|inactive|unknown"
    r"|not available|does not|has been disabled)|no mailbox"
    r"|account (has been |is )?(disabled|deactivated|closed|suspended|expired|inactive"
    r"|terminated|deleted)|unrouteable|no such domain"
    r"|domain (not found|does not exist|unknown)|host (or domain name )?not found|host unknown"
    r"|unknown host|name service error|no mx |null mx|not our customer|user not found"
    r"|addressee unknown|no longer (valid|available|active|in use)|bad destination"
    r"|no valid recipients|mail receiving disabled|can't create user output file"
    r"|not listed in .{0,20}directory"
    r"|user doesn't have .{0,40} account"
    r"|email account that you tried to reach (is disabled|does not)"
    r"|(recipient|name) is not recogni[sz]ed|unknown recipient"
    r"|(user|recipient|address|mailbox) not known"
    r"|invalid .{0,40}userid|nxdomain|domain name not found"
    r"|final (e-?mail )?delivery point|no matches to nameserver query|did not (exactly )?match"
    r"|n'existe pas|existiert nicht|bestaat niet|unbekannt|inconnu|no existe"
)
LOOP = r"too many hops|message looping|mail loop|routing loop|loop(s)? (detected|back to myself)"
TEMPORARY = (
    r"expired|retry time|retry timeout|timed? ?out|time limit|could not be delivered for"
    r"|will (keep|continue) (on )?trying|try again later|temporar|deferred|delayed"
    r"|connection (refused|reset|lost)|network (error|is unreachable)|resources? unavailable"
    r"|not responding|within \d+ days|after \d+ days|aborted after|failed \d+ attempts"
    r"|maximum delivery attempts|not been collected"
)

# About our own sending whatever code comes with it: the receiving MTA checked our envelope
# sender (a callout names our VERP address with its own "5.1.1"), or our quota ran out.
OUR_SIDE = (
    r"sender (address )?(rejected|verify|verification)|verification failed for"
    r"|sender verify failed|sender domain"
    r"|invalid dns (mx|a)|sending quota|daily (user |message )?(sending )?quota|sending limit"
)

TABLE: tuple[Row, ...] = (
    # 1. what is about our side whatever the code; then status codes that say what happened
    Row("greylisting: a first attempt refused for a while", S, phrase=r"gr[ae]y ?list"),
    Row("mailbox full (5.2.2)", S, status="5.2.2"),  # C18: temporary, whatever else it says
    Row("our sender address or quota refused", B, phrase=OUR_SIDE),
    Row("success", D, status="2."),
    Row("the sender's address refused", B, status="5.1.7"),
    Row("the sender's system refused", B, status="5.1.8"),
    Row("bad destination mailbox", H, status="5.1.1"),
    Row("bad destination system: no such domain", H, status="5.1.2"),
    Row("bad destination mailbox address syntax", H, status="5.1.3"),
    Row("ambiguous destination mailbox", H, status="5.1.4"),
    Row("mailbox moved, no forwarding address", H, status="5.1.6"),
    Row("no such recipient, or a null MX (5.1.10)", H, status="5.1.10"),
    Row("mailbox disabled", H, status="5.2.1"),
    Row("message too big for the mailbox", B, status="5.2.3"),
    Row("message too big for the system", B, status="5.3.4"),
    Row("no route to the domain", H, status="5.4.4"),
    Row("a routing loop (5.4.6): the address cannot receive mail", H, status="5.4.6"),
    Row("delivery time expired", S, status="5.4.7"),
    # RFC 6531: a hop cannot take a non-ASCII address; neither the address's fault nor ours.
    Row("a non-ASCII address a hop cannot take (5.6.7)", R, status="5.6.7"),
    Row("the content was refused", B, status="5.6."),
    Row("security or policy", B, status="5.7."),
    Row("refused for a while for policy or rate", B, status="4.7."),
    Row("temporary failure", S, status="4."),
    # 2. what MTAs write when the code is generic or missing
    Row("mailbox full", S, phrase=MAILBOX_FULL),
    Row("a name lookup that failed for a while", S, phrase=r"not found, try again"),
    Row("refused for the sender or the message", B, phrase=SENDER_LEVEL),
    Row("the address does not exist", H, phrase=ADDRESS_GONE),
    Row("the address loops back: it cannot receive mail", H, phrase=LOOP),
    Row("temporary: expired, deferred, network", S, phrase=TEMPORARY),
    # 3. the class alone
    Row("permanent failure that gives no reason", R, status="5."),
    Row("nothing readable", R),
)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    rule: str  # the row's name: stored with the report, shown in the review


def decide(status: str | None, text: str) -> Decision:
    """The first row that matches `status` (an RFC 3463 code, or None) and `text`. Addresses
    are taken out of the text first (`spam@...` says nothing about spam), and line breaks,
    which MTAs put anywhere in a phrase."""
    text = without_addresses(text[:READ_AT_MOST])
    text = _HOST.sub(" host <host> ", text)
    for row in TABLE:
        if row.matches(status, text):
            return Decision(row.verdict, row.name)
    raise AssertionError("the last row matches everything")


_CODE = r"([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)"  # "5.1.1" and "5.1.1." but not "5.1.1.2"
_PAIRED = re.compile(r"(?<![\d.])[245]\d\d[ -]" + _CODE)  # "550 5.1.1", "550-5.1.1"
_QMAIL = re.compile(r"\(#" + _CODE + r"\)")  # "(#5.1.1)"
_ENHANCED = re.compile(r"(?<![\d.])" + _CODE)
_BASIC = re.compile(r"(?<![\d.])([245])[0-5]\d(?=[ -]|$)", re.MULTILINE)


READ_AT_MOST = 8000  # characters of a diagnostic: what fails is said first, the rest is ours


# The MX a Postfix or Exim report names ("host spam.example.net[192.0.2.5] said: ..."): its
# name is not what it said. Other host names stay: "listed at zen.spamhaus.org" is the reason.
_HOST = re.compile(r"\bhost\s+[\w-]+(?:\.[\w-]+)+(?:\[[^\]]*\])?", re.IGNORECASE)


def status_in(text: str, *, success: bool = True) -> str | None:
    """The RFC 3463 code of a reply or diagnostic: one that follows an SMTP reply code
    ("550 5.1.1 ...") or qmail's "(#5.1.1)" first; then a lone one, if it agrees with the
    class of the reply code when there is one ("(Exim 4.94.2) ... 550 User unknown": 4.94.2
    is a version, "vom 4.7.24" a date); then the class of the reply code alone ("550 ..." ->
    "5.0.0"). `success=False` skips 2.x.x codes, for free text where "250 2.1.0 Sender ok"
    is a step of the transcript, not the outcome."""
    basic = next((m.group(1) for m in _BASIC.finditer(text) if success or m.group(1) != "2"), None)
    for pattern in (_PAIRED, _QMAIL, _ENHANCED):
        for match in pattern.finditer(text):
            if not success and match.group(1) == "2":
                continue
            if pattern is _ENHANCED and basic is not None and match.group(1) != basic:
                continue
            return ".".join(match.groups())
    return f"{basic}.0.0" if basic is not None else None
