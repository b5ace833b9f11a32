"""The address hasher: HMAC-SHA256 of a normalised address under each configured secret (C21).

Suppression entries and the contacts' address hashes are keyed by it, so an entry outlives the
contact; new entries use the first secret and lookups try them all, so a secret can be rotated.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class AddressHasher:
    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("at least one secret key is needed to hash addresses")

    @staticmethod
    @cache
    def key_id(key: bytes) -> str:
        return hashlib.sha256(b"mailer-key-id:" + key).hexdigest()[:12]

    def primary(self, address: str) -> tuple[str, str]:
        """(hash, key id) for a new entry, made with the first (signing) key."""
        key = self.keys[0]
        return address_hmac(key, address), self.key_id(key)

    def all_hashes(self, address: str) -> list[str]:
        return [address_hmac(key, address) for key in self.keys]

    def keyed_hashes(self, address: str) -> list[tuple[str, str]]:
        """(key id, hash) under every configured key."""
        return [(self.key_id(key), address_hmac(key, address)) for key in self.keys]

    @property
    def key_ids(self) -> list[str]:
        return [self.key_id(key) for key in self.keys]


def address_hmac(key: bytes, address: str) -> str:
    return hmac.digest(key, address.encode(), "sha256").hex()
