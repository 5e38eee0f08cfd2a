"""What one batch writes: the pipeline's plan, handed to the store as plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from notifier.core.model import (
    DeadLetter,
    NotificationStatus,
    StoredEvent,
    StoredTimer,
    digest,
)


@dataclass(slots=True)
class NewNotification:
    """A ledger row to insert."""

    id: str
    idempotency_key: str
    event_id: str
    order_id: str
    customer_id: str
    channel: str
    template: str
    template_version: str | None
    locale: str | None
    recipient: str | None
    subject: str | None
    body_text: str | None
    body_html: str | None
    status: NotificationStatus
    priority: int
    event_seq: int
    digest: str
    state: str
    last_error: str | None
    #: a fallback rule's channels share a group; rank 0 is tried first
    fallback_group: str | None = None
    fallback_rank: int | None = None
    #: who it comes from (its store's), and where replies go; None: the channel's own
    sender: str | None = None
    reply_to: str | None = None
    #: the rule's category (what a customer may switch off), and the one-click
    #: unsubscribe link an alert carries (an email's ``List-Unsubscribe``)
    category: str = "transactional"
    unsubscribe_url: str | None = None
    #: held by quiet hours: the outbox publishes it from this moment (UTC); None: now
    not_before: datetime | None = None


@dataclass(slots=True)
class LedgerUpdate:
    """A queued ledger row to withdraw (suppress) or replace with a fresh rendering."""

    id: str
    replacement: NewNotification | None
    reason: str
    #: the status the row must still have (the dispatcher may have taken it since)
    from_status: str = NotificationStatus.QUEUED.value


@dataclass(slots=True)
class OrderWrite:
    """An order's recomputed state."""

    order_id: str
    source: str
    customer_id: str
    derived_state: str
    order_state: str | None
    shipments: dict[str, str]
    last_event_at: datetime | None
    exists: bool


@dataclass(slots=True)
class TimerWrite:
    """A timer to arm or re-arm (``exists``: its row is there already), or to mark
    fired, or (``delete``) to clear."""

    timer: StoredTimer
    exists: bool
    delete: bool = False


@dataclass(slots=True)
class BatchPlan:
    """Everything one batch writes, in one transaction."""

    events: list[StoredEvent] = field(default_factory=list)
    orders: list[OrderWrite] = field(default_factory=list)
    notifications: list[NewNotification] = field(default_factory=list)
    updates: list[LedgerUpdate] = field(default_factory=list)
    #: sent rows whose content a correction superseded: id → what the customer now knows
    retold: dict[str, str] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: timers armed, re-armed, fired or cleared with the history that decides them
    timers: list[TimerWrite] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        """Tally an outcome for metrics and logs."""
        self.counts[what] = self.counts.get(what, 0) + 1


#: the digest of a sent notification whose event was withdrawn (the customer was told so)
WITHDRAWN = "withdrawn"


def notification_id(key: str) -> str:
    """Deterministic: a replanned batch or a retried send keeps the same id."""
    return "n_" + digest(key)[:24]
