"""From an order's replayed transitions to the notifications they call for.

An intent is keyed by ``event:rule:channel``, so the same transition always maps to
the same ledger row however often it is replayed, redelivered or recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from notifier.contracts.events import Channel, OrderEvent
from notifier.core.lifecycle import OrderView, Transition
from notifier.core.model import canonical_json, digest
from notifier.core.rules import Priority, RuleSet


@dataclass(frozen=True, slots=True)
class Intent:
    """One notification a transition calls for."""

    key: str
    event_id: str
    rule: str
    template: str
    channel: Channel
    priority: Priority
    transition: Transition
    #: a once-per-order rule: its key names the order, not the event that fired it
    once: bool = False


def derive_intents(view: OrderView, rules: RuleSet, order_id: str) -> dict[str, Intent]:
    """Every notification the order's history calls for, keyed by idempotency key.

    A once-per-order rule is keyed by the order, so when the event that fires it changes
    (a redelivered ``placed`` lands before an applied ``confirmed``, or ``placed`` is
    retracted) it is still the same, single notification.
    """
    intents: dict[str, Intent] = {}
    fired_once: set[str] = set()
    for transition in view.transitions:
        for rule in rules.matching(transition):
            if rule.once:
                if rule.name in fired_once:
                    continue
                fired_once.add(rule.name)
            for channel in rule.channels:
                scope = f"order:{order_id}" if rule.once else transition.event_id
                key = f"{scope}:{rule.name}:{channel.value}"
                intents[key] = Intent(
                    key, transition.event_id, rule.name, rule.template, channel,
                    rule.priority, transition, once=rule.once,
                )
    return intents


def template_context(event: OrderEvent, transition: Transition) -> dict[str, Any]:
    """Plain data for templates: no objects with methods, nothing secret."""
    shipment: dict[str, Any] | None = None
    if transition.shipment_id is not None:
        s = event.shipment
        shipment = {
            "id": transition.shipment_id,
            "carrier": s.carrier if s else None,
            "tracking_number": s.tracking_number if s else None,
            "tracking_url": s.tracking_url if s else None,
            "estimated_delivery": (
                s.estimated_delivery.isoformat() if s and s.estimated_delivery else None
            ),
            "state": transition.to_state.value,
        }
    customer = event.customer
    return {
        "order": {
            "id": event.order_id,
            "source": event.source,
            "state": transition.order_state_after,
            "attributes": event.attributes,
        },
        "customer": {
            "id": customer.id,
            "name": customer.name,
            "locale": customer.locale,
            "timezone": customer.timezone,
        },
        "event": {
            "event_id": event.event_id,
            "state": event.state.value,
            "occurred_at": event.occurred_at.isoformat(),
            "reason": event.reason,
        },
        "shipment": shipment,
        "correction": None,
    }


def context_digest(context: dict[str, Any]) -> str:
    """What the customer is told, as a hash: a revision that changes it needs a correction."""
    return digest(canonical_json(context))


def recipient_for(event: OrderEvent, channel: Channel) -> tuple[str | None, str]:
    """The customer's address on a channel, or ``None`` and why there is none."""
    customer = event.customer
    if customer.channels is not None and channel not in customer.channels:
        return None, f"customer did not opt into {channel.value}"
    if channel is Channel.EMAIL:
        return (customer.email, "") if customer.email else (None, "customer has no email")
    if channel is Channel.SMS:
        return (customer.phone, "") if customer.phone else (None, "customer has no phone")
    if customer.push_tokens:
        return customer.push_tokens[0], ""
    return None, "customer has no push token"
