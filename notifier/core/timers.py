"""Time rules: which timers an order's history arms, and what a due timer finds.

Pure, like every stage of ``notifier.core``: the store keeps the timers (one row per
order, rule and shipment) and the poller hands a due one back here with the order's
current history and the clock's ``now``.

    held (for)         armed when the state was entered; for a shipment state, by the
                       shipment's last carrier event (a new scan re-arms it)
    held (until)       due at the end of the customer's local day (customer.timezone)
    promise_missed     due at shipment.estimated_delivery (or the order's
                       attributes.promised_delivery) plus the grace; a revised
                       estimate re-arms it; delivered clears it
    predicted_late     due when the shipment has been on its way longer than its
                       carrier's transit time at the rule's percentile (``core.transit``),
                       if that is before the promise; while the model knows too little,
                       a provisional timer looks again every ``Forecast.recheck``; past
                       the promise it is moot (promise_missed speaks)

Due times count from the events' ``occurred_at``, so a late event can be due at once.
At fire time the rule is asked again against the history as it is *now*: still held
(or still missed) fires; moved on fires nothing; due later (re-armed since) waits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from notifier.contracts.events import SHIPMENT_STATES, OrderEvent, OrderState
from notifier.core.lifecycle import OrderView, Outcome
from notifier.core.model import OrderAggregate, StoredEvent, StoredTimer
from notifier.core.plan import TimerWrite
from notifier.core.rule_kinds import RuleKind
from notifier.core.rules import Rule, RuleSet
from notifier.core.transit import Forecast

#: the shipment key of an order-level timer
ORDER_LEVEL = ""
_OVER = frozenset({OrderState.CANCELLED, OrderState.REFUNDED})
_HANDED_OVER = frozenset({OrderState.DELIVERED, OrderState.RETURNED})
#: a parcel on its way, which a prediction can be about
_ON_ITS_WAY = frozenset({OrderState.SHIPPED, OrderState.IN_TRANSIT, OrderState.OUT_FOR_DELIVERY})
#: when a caller has no transit model: predictions know nothing, and look again hourly
_NO_FORECAST = Forecast()


@dataclass(frozen=True, slots=True)
class Armed:
    """A timer the history calls for."""

    rule: Rule
    shipment: str
    due_at: datetime
    armed_at: datetime
    #: the event the notification will speak of (its customer, shipment, store)
    event_id: str
    #: the state of the order or shipment it watches
    state: OrderState
    #: past this moment the timer is moot (a prediction, once the promise has passed)
    until: datetime | None = None
    #: a prediction the model cannot make yet: not fired, only looked at again
    provisional: bool = False

    def stored(self, order: OrderAggregate) -> StoredTimer:
        """As a row of the store."""
        return StoredTimer(
            order.order_id,
            self.rule.name,
            self.shipment,
            self.due_at,
            self.armed_at,
            self.event_id,
            order.events[self.event_id].customer_id,
        )


@dataclass(frozen=True, slots=True)
class Due:
    """What a due timer found: ``fire`` it (``armed`` says for what), or it ``moved_on``
    (why, for the ledger), or it is not due yet (``armed`` has the new due time), or
    neither (a prediction whose promise has passed: done, with nothing to record)."""

    armed: Armed | None
    fire: bool
    moved_on: str | None = None


def wanted_timers(
    order: OrderAggregate, view: OrderView, rules: RuleSet, forecast: Forecast = _NO_FORECAST
) -> dict[tuple[str, str], Armed]:
    """Every timer the order's current history calls for, by (rule, shipment)."""
    if not rules.timed or view.order_state in _OVER:
        return {}
    counted = counted_events(order, view)
    wanted: dict[tuple[str, str], Armed] = {}
    for rule in rules.timed:
        if rule.kind is RuleKind.HELD:
            found = _held(rule, counted, view)
        elif rule.kind is RuleKind.PREDICTED_LATE:
            found = _predicted(rule, counted, view, forecast)
        else:
            found = _promise(rule, counted, view)
        for armed in found:
            event = order.events[armed.event_id].parsed()
            if rule.conditions.allow(event):
                wanted[rule.name, armed.shipment] = armed
    return wanted


def timer_writes(
    order: OrderAggregate, view: OrderView, rules: RuleSet, forecast: Forecast = _NO_FORECAST
) -> list[TimerWrite]:
    """What an ingest batch changes of the order's timers: arm what is newly called for,
    re-arm what is due at another time now, clear what the order moved on from. A timer
    that fired keeps its row while its due time stands, so it never fires twice."""
    if not rules.timed and not order.timers:
        return []
    wanted = wanted_timers(order, view, rules, forecast)
    writes: list[TimerWrite] = []
    for key, armed in wanted.items():
        stored = order.timers.get(key)
        if stored is not None and stored.due_at == armed.due_at:
            continue
        writes.append(TimerWrite(armed.stored(order), exists=stored is not None))
    writes.extend(
        TimerWrite(stored, exists=True, delete=True)
        for key, stored in order.timers.items()
        if key not in wanted
    )
    return writes


def check_due(
    timer: StoredTimer,
    order: OrderAggregate,
    view: OrderView,
    rules: RuleSet,
    now: datetime,
    *,
    forecast: Forecast = _NO_FORECAST,
) -> Due:
    """Ask a due timer's rule again, against the history as it is now. Never early:
    a timer whose due time moved past ``now`` only waits."""
    rule = rules.named(timer.rule)
    if rule is None or not rule.timed:
        return Due(None, fire=False, moved_on=f"rule {timer.rule} is no longer in the rules file")
    armed = wanted_timers(order, view, rules, forecast).get((timer.rule, timer.shipment))
    if armed is None:
        return Due(None, fire=False, moved_on=f"moved on: order is {view.derived_state}")
    if armed.until is not None and now >= armed.until:
        return Due(None, fire=False)  # a prediction past its promise: promise_missed speaks
    if armed.provisional:
        return Due(replace(armed, due_at=max(armed.due_at, now + forecast.recheck)), fire=False)
    if armed.due_at > now:
        return Due(armed, fire=False)
    return Due(armed, fire=True)


def end_of_local_day(moment: datetime, timezone: str) -> datetime:
    """The first instant of the next day where the customer is, in UTC."""
    zone = ZoneInfo(timezone)
    local = moment.astimezone(zone)
    return datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)


def counted_events(order: OrderAggregate, view: OrderView) -> list[StoredEvent]:
    """The events that say where things stand (applied or repeated, not retracted), in
    stream order."""
    kept = (Outcome.APPLIED, Outcome.REPEATED)
    return sorted(
        (
            e
            for e in order.events.values()
            if not e.retracted and view.outcomes.get(e.event_id) in kept
        ),
        key=lambda e: (e.seq, e.event_id),
    )


def _held(rule: Rule, counted: list[StoredEvent], view: OrderView) -> list[Armed]:
    found: list[Armed] = []
    state = view.order_state
    if state in rule.states and state not in SHIPMENT_STATES and not view.shipments:
        entered = next(
            (
                t
                for t in reversed(view.transitions)
                if t.shipment_id is None and t.to_state == state
            ),
            None,
        )
        event = next((e for e in counted if entered and e.event_id == entered.event_id), None)
        if event is not None and state is not None:
            found.append(_arm(rule, ORDER_LEVEL, event, state))
    for shipment, current in view.shipments.items():
        if current not in rule.states:
            continue
        # "held" for a parcel: no new carrier event for it, whatever the state it names
        last = max(
            (e for e in counted if e.shipment_id == shipment),
            key=lambda e: e.occurred_at,
            default=None,
        )
        if last is not None:
            found.append(_arm(rule, shipment, last, current))
    return found


def _arm(rule: Rule, shipment: str, event: StoredEvent, state: OrderState) -> Armed:
    at = event.occurred_at
    if rule.until_end_of_local_day:
        due = end_of_local_day(at, event.parsed().customer.timezone)
    else:
        due = at + (rule.held_for or timedelta(0))
    return Armed(rule, shipment, due.astimezone(UTC), at, event.event_id, state)


def _promise(rule: Rule, counted: list[StoredEvent], view: OrderView) -> list[Armed]:
    found: list[Armed] = []
    for shipment, current in view.shipments.items():
        if current in _HANDED_OVER:
            continue
        promised = [
            (e, eta)
            for e in counted
            if e.shipment_id == shipment and (eta := _estimate(e.parsed())) is not None
        ]
        if promised:
            event, eta = promised[-1]  # the latest estimate stands: a revision re-arms
            found.append(_promised(rule, shipment, event, eta, current))
    if found or not counted or view.derived_state in {s.value for s in _HANDED_OVER}:
        return found
    latest = counted[-1]
    parsed = latest.parsed()
    promised_at = promised_delivery(parsed)
    if promised_at is not None:
        state = view.order_state or OrderState(latest.state)
        found.append(_promised(rule, ORDER_LEVEL, latest, promised_at, state))
    return found


def _promised(
    rule: Rule, shipment: str, event: StoredEvent, eta: datetime, state: OrderState
) -> Armed:
    return Armed(
        rule, shipment, (eta + rule.grace).astimezone(UTC), event.occurred_at, event.event_id, state
    )


def _predicted(
    rule: Rule, counted: list[StoredEvent], view: OrderView, forecast: Forecast
) -> list[Armed]:
    found: list[Armed] = []
    for shipment, current in view.shipments.items():
        if current not in _ON_ITS_WAY:
            continue
        mine = [e for e in counted if e.shipment_id == shipment]
        shipped = next((e for e in mine if e.state == OrderState.SHIPPED.value), None)
        if shipped is None:
            continue
        carrier: str | None = None
        promised: datetime | None = None
        for event in mine:
            parsed = event.parsed()
            if parsed.shipment is not None and parsed.shipment.carrier:
                carrier = parsed.shipment.carrier
            promised = _estimate(parsed) or promised
        promised = promised or promised_delivery(counted[-1].parsed())
        if promised is None:
            continue
        since = shipped.occurred_at
        estimate = forecast.model.estimate(carrier, shipped.parsed().source, rule.percentile)
        speak = mine[-1].event_id
        if estimate is None:
            due = since + forecast.recheck
            found.append(Armed(rule, shipment, due, since, speak, current, promised, True))
            continue
        due = since + timedelta(hours=estimate.hours)
        if due < promised:
            found.append(
                Armed(rule, shipment, due.astimezone(UTC), since, speak, current, promised)
            )
    return found


def _estimate(event: OrderEvent) -> datetime | None:
    return event.shipment.estimated_delivery if event.shipment else None


def promised_delivery(event: OrderEvent) -> datetime | None:
    """``attributes.promised_delivery`` (ISO 8601) as a moment: a date alone means by the
    end of that day where the customer is; a time without an offset, their local time.
    Anything else is no promise (attributes are the platform's free-form data)."""
    raw = event.attributes.get("promised_delivery")
    if not isinstance(raw, str):
        return None
    zone = ZoneInfo(event.customer.timezone)
    try:
        if len(raw.strip()) == 10:
            day = date.fromisoformat(raw.strip())
            return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)
