"""The states of a campaign, of one of its runs and of one delivery, and the campaign's
transitions: the state machine `lifecycle.py` moves campaigns through.

    draft | scheduled | paused --schedule--> scheduled
    scheduled --start--> sending --finish--> done (one-off) | scheduled (recurring)
    draft | scheduled --start_now--> sending               (`campaigns send --now`)
    scheduled | sending --pause--> paused --resume--> sending (a run is open) | scheduled
    any but done and cancelled --cancel--> cancelled

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


class Action(StrEnum):
    """What moves a campaign; the value is how an error message says it was done to one."""

    SCHEDULE = "scheduled"
    START = "started"  # a scheduled firing
    START_NOW = "started now"  # `campaigns send --now`
    PAUSE = "paused"
    RESUME = "resumed"
    CANCEL = "cancelled"
    FINISH = "finished"


_C = CampaignStatus
# The states each action is allowed from. Where an action leads is the action's own business
# (resume and finish depend on the campaign), so the table says only what may happen when.
ALLOWED_FROM: dict[Action, frozenset[CampaignStatus]] = {
    Action.SCHEDULE: frozenset({_C.DRAFT, _C.SCHEDULED, _C.PAUSED}),
    Action.START: frozenset({_C.SCHEDULED}),
    Action.START_NOW: frozenset({_C.DRAFT, _C.SCHEDULED}),
    Action.PAUSE: frozenset({_C.SCHEDULED, _C.SENDING}),
    Action.RESUME: frozenset({_C.PAUSED}),
    Action.CANCEL: frozenset(set(_C) - {_C.DONE, _C.CANCELLED}),
    Action.FINISH: frozenset({_C.SENDING}),
}


def may(status: str, action: Action) -> bool:
    return status in ALLOWED_FROM[action]


def require(status: str, action: Action) -> None:
    """Raise the API's `invalid_transition` conflict unless `action` is allowed from `status`
    ("a done campaign cannot be paused")."""
    if not may(status, action):
        raise Conflict(
            f"a {status} campaign cannot be {action.value}",
            field="status",
            reason="invalid_transition",
        )
