"""Recipient tokens: opaque, HMAC-signed, compact, case-insensitive (C24, C28).

A token is base32 (lower case, no padding) of: one byte for its kind, the id it is bound to
(a delivery for unsubscribe and bounce tokens, so it names contact and campaign; a contact for
the preference center; a pending sign-up for confirmation), and 16 bytes of HMAC-SHA256 over
both. Base32 survives mail systems that change the case of a local part, and the mailto and
VERP forms stay within the 64 characters a local part may have. Tokens do not expire: a link in
a two-year-old mail still unsubscribes. They are checked against every configured secret, so a
secret can be rotated without breaking mail already sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from enum import Enum
from functools import cached_property


class Kind(Enum):
    UNSUBSCRIBE = b"u"  # bound to a delivery
    BOUNCE = b"b"  # bound to a delivery (VERP envelope sender)
    MESSAGE = b"m"  # bound to a delivery (the Message-ID: a complaint quoting it finds it)
    PREFERENCES = b"p"  # bound to a contact
    CONFIRM = b"c"  # bound to a pending sign-up
    CLICK = b"k"  # bound to a delivery and a tracked link (C35)
    OPEN = b"o"  # bound to a delivery: the open pixel (C35)


_MAC_BYTES = 16


@dataclass(frozen=True)
class TokenSigner:
    keys: tuple[bytes, ...]

    def delivery_token(self, kind: Kind, delivery_id: int) -> str:
        return self._sign(kind, delivery_id.to_bytes(8, "big"))

    def hex_token(self, kind: Kind, hex_id: str) -> str:
        return self._sign(kind, bytes.fromhex(hex_id))

    def click_token(self, delivery_id: int, link_id: int) -> str:
        return self._sign(Kind.CLICK, delivery_id.to_bytes(8, "big") + link_id.to_bytes(8, "big"))

    def read_click(self, token: str) -> tuple[int, int] | None:
        """(delivery id, link id) of a tracked link's token."""
        ref = self._verify(Kind.CLICK, token)
        if ref is None or len(ref) != 16:
            return None
        return int.from_bytes(ref[:8], "big"), int.from_bytes(ref[8:], "big")

    def read_delivery(self, kind: Kind, token: str) -> int | None:
        ref = self._verify(kind, token)
        return None if ref is None or len(ref) != 8 else int.from_bytes(ref, "big")

    def read_hex(self, kind: Kind, token: str) -> str | None:
        ref = self._verify(kind, token)
        return None if ref is None or len(ref) != 16 else ref.hex()

    def _sign(self, kind: Kind, ref: bytes) -> str:
        body = kind.value + ref
        mac = self._signing.copy()  # the same HMAC as _mac(self.keys[0], body)
        mac.update(body)
        return _encode(body + mac.digest()[:_MAC_BYTES])

    @cached_property
    def _signing(self) -> hmac.HMAC:
        # The signing key's HMAC with the prefix already in, made once: a token copies it
        # instead of hashing the key and the prefix again (three tokens per message).
        return hmac.new(self.keys[0], _PREFIX, hashlib.sha256)

    def _verify(self, kind: Kind, token: str) -> bytes | None:
        raw = _decode(token)
        if raw is None or len(raw) <= 1 + _MAC_BYTES or raw[:1] != kind.value:
            return None
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        # Every secret is tried, always all of them, so timing does not tell which matched.
        valid = [hmac.compare_digest(mac, _mac(key, body)) for key in self.keys]
        return body[1:] if any(valid) else None


_PREFIX = b"mailer-token:"


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.digest(key, _PREFIX + body, hashlib.sha256)[:_MAC_BYTES]


_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_TO_ALPHABET = bytes.maketrans(bytes(range(32)), _ALPHABET.encode())


def _spread_steps() -> list[tuple[int, int, int]]:
    """Moving 64 five-bit groups (40 bytes) apart into 64 bytes, one group per byte, takes six
    steps on one big integer: each moves the upper half of every block of groups up by 3 bits
    a group (blocks of 64 groups, then 32, ... then 2). A step is: (value & mask of the low
    halves) | ((value & mask of the high halves) << shift)."""
    steps = []
    for half in (32, 16, 8, 4, 2, 1):
        low = sum(((1 << 5 * half) - 1) << (16 * half * block) for block in range(32 // half))
        steps.append((low, low << 5 * half, 3 * half))
    return steps


_SPREAD = _spread_steps()


def _encode(raw: bytes) -> str:
    """`base64.b32encode(raw).decode().rstrip("=").lower()`, faster: in Python 3.11 base64's
    base32 is pure Python, and three tokens go into every message. Zero bits pad `raw` to 40
    bytes (base32 pads with zero bits too); the result is cut to the unpadded length."""
    size = len(raw)
    if size > 40:  # longer than any token: the standard library
        return base64.b32encode(raw).decode().rstrip("=").lower()
    value = int.from_bytes(raw, "big") << (8 * (40 - size))
    for low, high, shift in _SPREAD:
        value = (value & low) | ((value & high) << shift)
    return value.to_bytes(64, "big").translate(_TO_ALPHABET)[: (size * 8 + 4) // 5].decode()


def _decode(token: str) -> bytes | None:
    if not token or len(token) > 120 or not token.isascii():
        return None
    padded = token.upper() + "=" * (-len(token) % 8)
    try:
        return base64.b32decode(padded)
    except (binascii.Error, ValueError):
        return None
