"""What every domain service needs besides a session: the business configuration, the address
hasher (for the suppression list) and the clock. Built once, by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.clock import Clock
from campaigns.config import BusinessConfig
from campaigns.suppression.hashing import AddressHasher


@dataclass(frozen=True)
class Context:
    config: BusinessConfig
    hasher: AddressHasher
    clock: Clock
