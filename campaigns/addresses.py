"""Email addresses: validation and the one normal form used as a key everywhere."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


def normalise_address(raw: str) -> str:
    """Validate (syntax only, no DNS) and return the address in its key form.

    Lower-cased as a whole: mailbox providers treat local parts case-insensitively, and a
    suppression must match however the shop spells the address.
    """
    if any(ch in raw for ch in "\r\n\0"):
        raise ValueError("an email address cannot contain line breaks")
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    return result.normalized.lower()
