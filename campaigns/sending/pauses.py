"""Why a campaign paused: one home for the reasons, as the API's `paused_reason` says them
(English, as stored) and as a kind with its values, so the console says them in the
marketer's language. A reason that does not read as one of these (written by an older version,
or cut at the column's 200 characters where its end no longer matches) is shown as stored."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The kinds, in English: what `paused_reason` stores and the API returns.
ENGLISH = {
    "marketer": "paused by a marketer",
    "relay": "paused after {failures} relay failures in a row: {detail}",
    "composition": "paused: messages cannot be composed ({detail})",
    "complaints": "paused: complaints at {rate} of delivered mail (limit {limit})",
    "blocks": (
        "paused: {domain} refused {rate} of its messages as sender-level blocks (limit {limit})"
    ),
}
REASON_LENGTH = 200  # campaign.paused_reason


@dataclass(frozen=True)
class PauseReason:
    kind: str
    values: dict[str, str]

    @property
    def text(self) -> str:
        return ENGLISH[self.kind].format(**self.values)[:REASON_LENGTH]


def by_marketer() -> str:
    return PauseReason("marketer", {}).text


def relay_failing(failures: int, detail: str) -> str:
    return PauseReason("relay", {"failures": str(failures), "detail": detail}).text


def not_composable(detail: str) -> str:
    return PauseReason("composition", {"detail": detail}).text


def complaints(rate: float, limit: float) -> str:
    return PauseReason("complaints", {"rate": f"{rate:.2%}", "limit": f"{limit:.2%}"}).text


def domain_blocks(domain: str, rate: float, limit: float) -> str:
    values = {"domain": domain, "rate": f"{rate:.1%}", "limit": f"{limit:.0%}"}
    return PauseReason("blocks", values).text


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>.*?)" for i, part in enumerate(parts)
    )
    return re.compile(regex + r"\Z", re.DOTALL)


_PATTERNS = {kind: _pattern(template) for kind, template in ENGLISH.items()}


def read(text: str) -> PauseReason | None:
    """The kind and values of a stored reason; None when it is none of them (as it was)."""
    for kind, pattern in _PATTERNS.items():
        match = pattern.match(text)
        if match is not None:
            return PauseReason(kind, match.groupdict())
    return None
