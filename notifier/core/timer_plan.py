"""What due timers write: their notifications (drafted as a transition's are), or the
``suppressed`` rows of those whose order moved on, and each timer marked or re-armed.

Pure, like ``pipeline.plan_batch``: the poller loads the orders (locked) and their
timers, hands them here with the clock's ``now``, and writes the plan in the same
transaction. Keys name the order, rule, shipment and due time
(``timer:<order>:<rule>:<shipment>:<due_at>:<channel>``), so a redelivered claim or a
second replica can never send the same alert twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from notifier.core.dedupe import replay_order
from notifier.core.drafts import Drafting, draft_intent, withheld
from notifier.core.intents import rule_intents
from notifier.core.lifecycle import Transition
from notifier.core.model import OrderAggregate, StoredTimer
from notifier.core.plan import BatchPlan, TimerWrite
from notifier.core.rules import RuleSet
from notifier.core.timers import ORDER_LEVEL, check_due
from notifier.core.transit import Forecast


def timer_group(timer: StoredTimer, due_at: datetime) -> str:
    """The key prefix of what a timer sends for one due time (channels are appended)."""
    shipment = timer.shipment or "order"
    return f"timer:{timer.order_id}:{timer.rule}:{shipment}:{due_at.isoformat()}"


def plan_due(
    d: Drafting,
    rules: RuleSet,
    orders: Mapping[str, OrderAggregate],
    due: Sequence[StoredTimer],
    now: datetime,
    *,
    forecast: Forecast | None = None,
) -> BatchPlan:
    """Plan what the ``due`` timers call for, each asked again against its order now."""
    plan = BatchPlan()
    for claimed in due:
        order = orders.get(claimed.order_id)
        timer = order.timers.get((claimed.rule, claimed.shipment)) if order else None
        if order is None or timer is None or not order.events:
            continue  # cleared, or the order forgotten by retention, since it was claimed
        if timer.fired_at is not None or timer.due_at > now:
            continue  # fired by another replica, or re-armed by an event since
        view = replay_order(order).view
        found = check_due(timer, order, view, rules, now, forecast=forecast or Forecast())
        if found.armed is not None and not found.fire:
            # re-armed later than it was due: wait (never early)
            plan.timers.append(TimerWrite(found.armed.stored(order), exists=True))
            plan.count("timer_rearmed")
            continue
        rule = rules.named(timer.rule)
        if found.fire and found.armed is not None and rule is not None:
            armed = found.armed
            state = armed.state
            transition = Transition(
                armed.event_id,
                None if armed.shipment == ORDER_LEVEL else armed.shipment,
                state,
                state,
                view.derived_state,
            )
            group = timer_group(timer, armed.due_at)
            for key, intent in rule_intents(rule, transition, group).items():
                if key not in order.notifications:
                    plan.notifications.append(draft_intent(d, order, intent, key))
            plan.count("timer_fired")
        elif rule is not None and found.moved_on is not None:
            event_id = timer.event_id if timer.event_id in order.events else _latest(order)
            event = order.events[event_id].parsed()
            group = timer_group(timer, timer.due_at)
            for channel in rule.channels:
                key = f"{group}:{channel}"
                if key in order.notifications:
                    continue
                plan.notifications.append(
                    withheld(
                        order,
                        event,
                        key,
                        template=rule.template,
                        channel=channel,
                        priority=rule.priority,
                        state=view.derived_state,
                        reason=found.moved_on,
                    )
                )
            plan.count("timer_moved_on")
        timer.fired_at = now
        plan.timers.append(TimerWrite(timer, exists=True, delete=rule is None))
    return plan


def _latest(order: OrderAggregate) -> str:
    return max(order.events.values(), key=lambda e: e.seq).event_id
