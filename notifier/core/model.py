"""Plain data passed between the store and the pure pipeline stages."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from notifier.contracts.events import OrderEvent, OrderState
from notifier.core.lifecycle import HistoryEntry, shipment_key

# drawn with its moves in notification_status; re-exported, as most of the code reads it here
from notifier.core.notification_status import (
    NotificationStatus as NotificationStatus,  # noqa: PLC0414
)


class DeadLetterReason(StrEnum):
    """Machine-readable reasons an event is dead-lettered."""

    INVALID_JSON = "invalid_json"
    SCHEMA_VIOLATION = "schema_violation"
    UNKNOWN_STATE = "unknown_state"
    ILLEGAL_TRANSITION = "illegal_transition"
    EVENT_ID_CONFLICT = "event_id_conflict"
    PROCESSING_ERROR = "processing_error"
    MAX_DELIVERIES = "max_deliveries"
    #: bigger than the contract allows: payload bytes, nesting depth or a string's length
    LIMIT_EXCEEDED = "limit_exceeded"
    #: ``occurred_at`` is further ahead of this service's clock than the allowed skew;
    #: replaying it once that time has come applies it
    FUTURE_TIMESTAMP = "future_timestamp"


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message as it came off the stream."""

    data: bytes
    headers: dict[str, str]
    subject: str
    seq: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the pipeline refuses, with a reason a platform team can read."""

    message: RawMessage
    reason: DeadLetterReason
    detail: str


def canonical_json(value: Any) -> str:
    """Stable JSON: the basis of content hashes and of what the store keeps."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(text: str) -> str:
    """A short, stable hash of some text."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """A valid event from this batch, with its stream position and content hash."""

    event: OrderEvent
    message: RawMessage
    payload: str
    content_hash: str

    @classmethod
    def build(cls, event: OrderEvent, message: RawMessage) -> IncomingEvent:
        """Compute the canonical payload once; the hash is what 'same content' means."""
        payload = canonical_json(_without_unset_later_fields(event.model_dump(mode="json")))
        return cls(event, message, payload, digest(payload))


def _without_unset_later_fields(dumped: dict[str, Any]) -> dict[str, Any]:
    """Fields added to contract v1 after events were first stored, while unset: left out
    of the canonical payload, so an event stored before them hashes as it did and a
    copy re-sent since is still a duplicate, not a revision."""
    if dumped.get("reason_code", 0) is None:
        del dumped["reason_code"]
    customer = dumped.get("customer")
    if isinstance(customer, dict) and customer.get("given_name", 0) is None:
        del customer["given_name"]
    return dumped


@dataclass(slots=True)
class StoredEvent:
    """An event the store already holds for an order."""

    event_id: str
    order_id: str
    #: where the event was first published, whichever copy came first: its place in
    #: the order's history
    seq: int
    #: where the version held was published (of two versions, the later one wins)
    revised_seq: int
    occurred_at: datetime
    state: str
    shipment_id: str | None
    content_hash: str
    payload: str
    retracted: bool
    outcome: str
    customer_id: str
    #: set by the pipeline: the row must be inserted or updated
    dirty: bool = False
    new: bool = False
    _parsed: OrderEvent | None = None
    #: the version held before this batch revised it: what the customer was told, which
    #: a correction compares with the new one
    before: OrderEvent | None = None

    @classmethod
    def from_incoming(cls, incoming: IncomingEvent) -> StoredEvent:
        """A history row for an event seen for the first time."""
        e = incoming.event
        return cls(
            event_id=e.event_id,
            order_id=e.order_id,
            seq=incoming.message.seq,
            revised_seq=incoming.message.seq,
            occurred_at=e.occurred_at,
            state=e.state.value,
            shipment_id=shipment_key(e.state, e.shipment.id if e.shipment else None),
            content_hash=incoming.content_hash,
            payload=incoming.payload,
            retracted=e.retracted,
            outcome="",
            customer_id=e.customer.id,
            dirty=True,
            new=True,
            _parsed=e,
        )

    def revise(self, incoming: IncomingEvent) -> None:
        """Take a revision's content, keeping the original stream position."""
        e = incoming.event
        if self.before is None:
            self.before = self.parsed()
        self.revised_seq = incoming.message.seq
        self.occurred_at = e.occurred_at
        self.state = e.state.value
        self.shipment_id = shipment_key(e.state, e.shipment.id if e.shipment else None)
        self.content_hash = incoming.content_hash
        self.payload = incoming.payload
        self.retracted = e.retracted
        self.customer_id = e.customer.id
        self.dirty = True
        self._parsed = e

    def parsed(self) -> OrderEvent:
        """The event itself, parsed from the stored payload on first use."""
        if self._parsed is None:
            self._parsed = OrderEvent.model_validate_json(self.payload)
        return self._parsed

    def entry(self) -> HistoryEntry:
        """What the lifecycle replay needs of this event."""
        return HistoryEntry(
            self.event_id, self.seq, self.occurred_at, OrderState(self.state), self.shipment_id
        )


@dataclass(slots=True)
class StoredNotification:
    """A ledger row, as much of it as the pipeline needs to decide on corrections."""

    id: str
    idempotency_key: str
    event_id: str
    channel: str
    template: str
    status: str
    digest: str
    state: str
    #: what it was headed (an email's subject, a push's title; None for an SMS) and when
    #: it went out: a correction names the message it corrects by them
    subject: str | None = None
    sent_at: datetime | None = None


@dataclass(slots=True)
class StoredTimer:
    """A durable timer of a time rule (``core.timers``): one per order, rule and
    shipment (``""`` for the order itself)."""

    order_id: str
    rule: str
    shipment: str
    due_at: datetime
    #: when what armed it happened (the event's ``occurred_at``), and which event
    armed_at: datetime
    event_id: str
    #: whose order it is: erasure finds the customer's timers by it
    customer_id: str
    #: set once it fired (or was found moved on): the same due time never fires again
    fired_at: datetime | None = None


@dataclass(slots=True)
class OrderAggregate:
    """An order with its history and ledger, as loaded (and locked) for one batch."""

    order_id: str
    exists: bool
    events: dict[str, StoredEvent] = field(default_factory=dict)
    notifications: dict[str, StoredNotification] = field(default_factory=dict)
    #: (rule, shipment) → its timer, for orders of a rule set with time rules
    timers: dict[tuple[str, str], StoredTimer] = field(default_factory=dict)
