"""The order lifecycle: transition tables and a deterministic replay of an order's history.

An order's state is never updated in place. It is recomputed by replaying the order's
events in stream order (the order the source published them), so revisions,
retractions and our own redeliveries (which can hand us an older event after a newer
one) all converge on the same answer.

Rules of the replay, per event:

* **stale** — it happened (``occurred_at``) before something already applied to the same
  entity: recorded in history, never moves the state backwards, never notifies. An
  order-level event compares with every applied event of the order; a shipment event
  with its own shipment and with the order's cancellation/refund.
* **repeated** — the entity is already in that state (another ``in_transit`` scan).
* **illegal** — not allowed by the tables below (``delivered`` → ``processing``,
  anything after ``cancelled`` but ``refunded``); the pipeline dead-letters it.
* **applied** — the state moves; the transition may call for notifications.

Order-level transitions (``None`` is "no state yet", which accepts any state)::

    placed     → confirmed, processing, on_hold, cancelled, refunded
    confirmed  → processing, on_hold, cancelled, refunded
    processing → on_hold, cancelled, refunded
    on_hold    → confirmed, processing, cancelled, refunded
    cancelled  → refunded
    refunded   → (nothing)

Once an order has shipments, only ``cancelled`` (while nothing was delivered or
returned) and ``refunded`` remain legal at order level; earlier states are backwards.
Shipment-level transitions, per shipment (a shipment event with no ``shipment``
object refers to the order's single implicit shipment ``"default"``)::

    (new)            → shipped, in_transit, out_for_delivery, delivered, delivery_failed, returned
    shipped          → in_transit, out_for_delivery, delivered, delivery_failed, returned
    in_transit       → out_for_delivery, delivered, delivery_failed, returned
    out_for_delivery → delivered, delivery_failed, returned
    delivery_failed  → in_transit, out_for_delivery, delivered, returned
    delivered        → returned
    returned         → (nothing)

Shipment events are illegal on a cancelled or refunded order. The order's displayed
state is derived from its shipments: ``delivered`` only when all are, otherwise
``partially_delivered`` when some are, else the least advanced shipment's state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from notifier.contracts.events import SHIPMENT_STATES, OrderState

S = OrderState
DEFAULT_SHIPMENT = "default"

ORDER_LEVEL: frozenset[OrderState] = frozenset(set(S) - SHIPMENT_STATES)

ORDER_NEXT: dict[OrderState | None, frozenset[OrderState]] = {
    None: ORDER_LEVEL,
    S.PLACED: frozenset({S.CONFIRMED, S.PROCESSING, S.ON_HOLD, S.CANCELLED, S.REFUNDED}),
    S.CONFIRMED: frozenset({S.PROCESSING, S.ON_HOLD, S.CANCELLED, S.REFUNDED}),
    S.PROCESSING: frozenset({S.ON_HOLD, S.CANCELLED, S.REFUNDED}),
    S.ON_HOLD: frozenset({S.CONFIRMED, S.PROCESSING, S.CANCELLED, S.REFUNDED}),
    S.CANCELLED: frozenset({S.REFUNDED}),
    S.REFUNDED: frozenset(),
}

SHIPMENT_NEXT: dict[OrderState | None, frozenset[OrderState]] = {
    None: SHIPMENT_STATES,
    S.SHIPPED: frozenset(
        {S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.DELIVERED, S.DELIVERY_FAILED, S.RETURNED}
    ),
    S.IN_TRANSIT: frozenset({S.OUT_FOR_DELIVERY, S.DELIVERED, S.DELIVERY_FAILED, S.RETURNED}),
    S.OUT_FOR_DELIVERY: frozenset({S.DELIVERED, S.DELIVERY_FAILED, S.RETURNED}),
    S.DELIVERY_FAILED: frozenset({S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.DELIVERED, S.RETURNED}),
    S.DELIVERED: frozenset({S.RETURNED}),
    S.RETURNED: frozenset(),
}

#: how far along a shipment is, for the derived order state
_SHIPMENT_RANK = {
    S.SHIPPED: 0,
    S.IN_TRANSIT: 1,
    S.DELIVERY_FAILED: 2,
    S.OUT_FOR_DELIVERY: 3,
    S.DELIVERED: 4,
    S.RETURNED: 5,
}
_TERMINAL_ORDER = frozenset({S.CANCELLED, S.REFUNDED})


class Outcome(StrEnum):
    """What the replay did with one event."""

    #: the state moved
    APPLIED = "applied"
    #: the entity was already in that state
    REPEATED = "repeated"
    #: older than what was already applied; kept in history only
    STALE = "stale"
    #: not allowed by the transition tables
    ILLEGAL = "illegal"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """The parts of an event the replay needs. ``seq`` is its first stream position."""

    event_id: str
    seq: int
    occurred_at: datetime
    state: OrderState
    shipment_id: str | None


@dataclass(frozen=True, slots=True)
class Transition:
    """One applied change of an order or of one of its shipments."""

    event_id: str
    shipment_id: str | None
    from_state: OrderState | None
    to_state: OrderState
    #: the order's derived state right after this transition
    order_state_after: str


@dataclass(slots=True)
class OrderView:
    """The result of replaying an order's history."""

    order_state: OrderState | None = None
    shipments: dict[str, OrderState] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    last_occurred_at: datetime | None = None

    @property
    def derived_state(self) -> str:
        """The order's state as a customer would describe it."""
        if self.order_state in _TERMINAL_ORDER or not self.shipments:
            return self.order_state.value if self.order_state else "unknown"
        states = set(self.shipments.values())
        if len(states) == 1:
            return next(iter(states)).value
        if states & {S.DELIVERED, S.RETURNED}:
            return "partially_delivered"
        return min(states, key=_SHIPMENT_RANK.__getitem__).value


def shipment_key(state: OrderState, shipment_id: str | None) -> str | None:
    """The shipment an event refers to, or ``None`` for an order-level event."""
    if state not in SHIPMENT_STATES:
        return None
    return shipment_id or DEFAULT_SHIPMENT


class Replay:
    """A replay in progress; ``step`` events in stream order, read ``view``."""

    def __init__(self) -> None:
        self.view = OrderView()
        self.order_at: datetime | None = None
        self.terminal_at: datetime | None = None
        self.shipment_at: dict[str, datetime] = {}

    def step(self, entry: HistoryEntry) -> Outcome:
        """Judge one event and apply it if legal; an illegal event changes nothing else."""
        outcome, reason = self._judge(entry)
        self.view.outcomes[entry.event_id] = outcome
        if reason:
            self.view.reasons[entry.event_id] = reason
        if outcome is Outcome.APPLIED:
            self._apply(entry)
        if outcome in (Outcome.APPLIED, Outcome.REPEATED):
            at = entry.occurred_at
            self.order_at = at if self.order_at is None else max(self.order_at, at)
            if entry.shipment_id is not None:
                self.shipment_at[entry.shipment_id] = at
            last = self.view.last_occurred_at
            self.view.last_occurred_at = at if last is None else max(last, at)
        return outcome

    def forget(self, event_id: str) -> None:
        """Drop the verdict on an event that was judged illegal and will not be kept."""
        self.view.outcomes.pop(event_id, None)
        self.view.reasons.pop(event_id, None)

    def _judge(self, e: HistoryEntry) -> tuple[Outcome, str]:
        view = self.view
        if e.shipment_id is None:
            if self.order_at is not None and e.occurred_at < self.order_at:
                return Outcome.STALE, ""
            current = view.order_state
            if current == e.state:
                return Outcome.REPEATED, ""
            if e.state not in ORDER_NEXT[current]:
                return Outcome.ILLEGAL, f"{current} → {e.state} is not allowed"
            if view.shipments and e.state not in _TERMINAL_ORDER:
                return Outcome.ILLEGAL, f"{e.state} after the order shipped is not allowed"
            delivered = any(s in (S.DELIVERED, S.RETURNED) for s in view.shipments.values())
            if e.state == S.CANCELLED and delivered:
                return Outcome.ILLEGAL, "cannot cancel an order that was delivered"
            return Outcome.APPLIED, ""
        if self.terminal_at is not None and e.occurred_at < self.terminal_at:
            return Outcome.STALE, ""
        seen = self.shipment_at.get(e.shipment_id)
        if seen is not None and e.occurred_at < seen:
            return Outcome.STALE, ""
        if view.order_state in _TERMINAL_ORDER:
            return Outcome.ILLEGAL, f"{e.state} after the order was {view.order_state}"
        current_shipment = view.shipments.get(e.shipment_id)
        if current_shipment == e.state:
            return Outcome.REPEATED, ""
        if e.state not in SHIPMENT_NEXT[current_shipment]:
            return Outcome.ILLEGAL, f"shipment {current_shipment} → {e.state} is not allowed"
        return Outcome.APPLIED, ""

    def _apply(self, e: HistoryEntry) -> None:
        view = self.view
        if e.shipment_id is None:
            previous = view.order_state
            view.order_state = e.state
            if e.state in _TERMINAL_ORDER:
                self.terminal_at = e.occurred_at
        else:
            previous = view.shipments.get(e.shipment_id)
            view.shipments[e.shipment_id] = e.state
        view.transitions.append(
            Transition(e.event_id, e.shipment_id, previous, e.state, view.derived_state)
        )


def replay_run(history: Iterable[HistoryEntry]) -> Replay:
    """Replay events in stream order (ties by event id); more events can be stepped after."""
    run = Replay()
    for entry in sorted(history, key=lambda h: (h.seq, h.event_id)):
        if run.view.outcomes.get(entry.event_id) is not None:
            continue
        run.step(entry)
    return run


def replay(history: Iterable[HistoryEntry]) -> OrderView:
    """Replay events in stream order (ties by event id) and return the order's view."""
    return replay_run(history).view
