"""Email addresses: validation and the one normal form used as a key everywhere."""

from __future__ import annotations

import re
from functools import lru_cache

import email_validator
import idna
from email_validator import EmailNotValidError, validate_email

# The everyday address (lower-case ASCII letters, digits, `._+-` in the local part, plain
# LDH domain labels, an alphabetic TLD) skips the full validator: it is where ingest spends
# its time, and for these addresses the validator only lower-cases the domain. The property
# test in tests/unit/test_addresses.py holds that both paths give the same answer.
_EVERYDAY = re.compile(
    r"(?P<local>[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*)"
    r"@(?P<domain>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?P<tld>[a-z]{2,63}))",
    re.ASCII,
)
_SPECIAL_USE = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)


def everyday_address(candidate: str) -> str | None:
    """`candidate` in normal form if it is an everyday address, else None (ask the validator)."""
    match = _EVERYDAY.fullmatch(candidate)
    if (
        match is None
        or len(match["local"]) > 64
        or len(candidate) > 254
        or "--" in match["domain"]  # IDNA-reserved label forms: leave them to the validator
        or match["tld"] in _SPECIAL_USE
    ):
        return None
    return candidate


def normalise_address(raw: str) -> str:
    """Validate (syntax only, no DNS) and return the address in its key form.

    Lower-cased as a whole: mailbox providers treat local parts case-insensitively, and a
    suppression must match however the shop spells the address.
    """
    if any(ch in raw for ch in "\r\n\0"):
        raise ValueError("an email address cannot contain line breaks")
    candidate = raw.strip()
    fast = everyday_address(candidate.lower())
    if fast is not None:
        return fast
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    return result.normalized.lower()


def without_addresses(text: str) -> str:
    """The text on one line, each word with an @ in it replaced (linear: a pattern like
    `\\S+@\\S+` takes quadratic time on a long run without spaces, and reports are anyone's)."""
    return " ".join("<address>" if "@" in word else word for word in text.split())


@lru_cache(maxsize=4096)
def a_labels(domain: str) -> str:
    """A domain as A-labels (`bücher.be` -> `xn--bcher-kva.be`): how RCPT TO carries it and
    how the reputation counts name it. IDNA 2008 (the idna package), as email-validator checks
    domains: Python's own "idna" codec is IDNA 2003, which maps straße.de to strasse.de,
    another domain. Raises idna.IDNAError (a ValueError) for a domain IDNA 2008 refuses."""
    return idna.encode(domain, uts46=True).decode("ascii")
