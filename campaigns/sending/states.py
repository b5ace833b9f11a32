"""The states of a campaign, of one of its runs and of one delivery, and the campaign's
transitions: the state machine `lifecycle.py` moves campaigns through.

    draft --schedule--> scheduled --start--> sending --finish--> done (scheduled again if cron)
                            ^   \\                |
                  schedule  |    pause         pause         cancel: from any state but
                            |      \\             v           done and cancelled
                          paused <--------------+
                            \\--resume--> sending (a run is open) | scheduled (none is)

A leaf module (enums and a table): every other module may import it.
"""

from __future__ import annotations

from enum import StrEnum

from campaigns.errors import Conflict


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    DONE = "done"
    CANCELLED = "cancelled"


class RunStatus(StrEnum):
    """One firing of a campaign: open while `sending`."""

    SENDING = "sending"
    DONE = "done"
    CANCELLED = "cancelled"


class DeliveryStatus(StrEnum):
    """queued --claim--> sending --handoff--> sent | failed | bounced | queued (a retry);
    skipped at the gate; unknown when it was in flight at a crash (see ledger.py)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    BOUNCED = "bounced"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"


# Deliveries that are still to be sent, or being sent.
OPEN_DELIVERIES = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)

_C = CampaignStatus
# action -> the states it is allowed from. Where an action leads is the action's own business
# (resume and finish depend on the campaign), so the table says only what may happen when.
ALLOWED_FROM: dict[str, frozenset[CampaignStatus]] = {
    "schedule": frozenset({_C.DRAFT, _C.SCHEDULED, _C.PAUSED}),
    "start": frozenset({_C.SCHEDULED}),
    "start_now": frozenset({_C.DRAFT, _C.SCHEDULED}),  # `campaigns send --now`
    "pause": frozenset({_C.SCHEDULED, _C.SENDING}),
    "resume": frozenset({_C.PAUSED}),
    "cancel": frozenset(set(_C) - {_C.DONE, _C.CANCELLED}),
    "finish": frozenset({_C.SENDING}),
}

# How an action is said in an error message ("a done campaign cannot be paused").
_PAST = {
    "schedule": "scheduled",
    "start": "started",
    "start_now": "started",
    "pause": "paused",
    "resume": "resumed",
    "cancel": "cancelled",
    "finish": "finished",
}


def may(status: str, action: str) -> bool:
    return status in ALLOWED_FROM[action]


def require(status: str, action: str) -> None:
    """Raise the API's `invalid_transition` conflict unless `action` is allowed from `status`."""
    if not may(status, action):
        raise Conflict(
            f"a {status} campaign cannot be {_PAST[action]}",
            field="status",
            reason="invalid_transition",
        )
