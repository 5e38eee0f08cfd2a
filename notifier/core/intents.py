"""From an order's replayed transitions to the notifications they call for.

An intent is keyed by ``event:rule:channel``, so the same transition always maps to
the same ledger row however often it is replayed, redelivered or recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notifier.contracts.channels import PARTNER_CHANNEL, ChannelSpec, PartnerRoutes
from notifier.contracts.events import OrderEvent, OrderState
from notifier.core.greeting import first_name
from notifier.core.lifecycle import OrderView, Transition
from notifier.core.links import Links
from notifier.core.model import OrderAggregate, canonical_json, digest
from notifier.core.rule_kinds import Audience
from notifier.core.rules import Priority, Rule, RuleSet
from notifier.core.timers import counted_events


@dataclass(frozen=True, slots=True)
class Intent:
    """One notification a transition calls for."""

    key: str
    event_id: str
    rule: str
    template: str
    channel: str
    priority: Priority
    transition: Transition
    #: a once-per-order rule: its key names the order, not the event that fired it
    once: bool = False
    #: a fallback rule: the group its channels share, and this channel's place in it
    fallback_group: str | None = None
    fallback_rank: int | None = None
    #: the rule's channels in order (a fallback rule tries them one after another)
    chain: tuple[str, ...] = ()
    #: a webhook delivery: the endpoint's name
    endpoint: str | None = None
    #: the rule's category (``transactional`` or ``alerts``): what a customer may switch off
    category: str = "transactional"
    #: an ops rule: sent to the operations address, not to the customer
    to_ops: bool = False


#: the ledger's channel for partner webhooks (not a customer channel)
WEBHOOK = PARTNER_CHANNEL
#: which webhook endpoints want a transition: (source, state) → endpoint names
WebhookRoutes = PartnerRoutes


def _no_webhooks(_source: str, _state: str) -> Sequence[str]:
    return ()


def derive_intents(
    view: OrderView,
    rules: RuleSet,
    order_id: str,
    *,
    source: str = "",
    webhooks: WebhookRoutes = _no_webhooks,
    order: OrderAggregate | None = None,
) -> dict[str, Intent]:
    """Every notification the order's history calls for, keyed by idempotency key.

    With the ``order`` (its events), a rule's ``conditions`` are checked against the
    event of each transition, and a shipment event that moves the estimated delivery
    later fires the ``estimate_revised`` rules. Without it, conditions are not checked.

    A once-per-order rule is keyed by the order, so when the event that fires it changes
    (a redelivered ``placed`` lands before an applied ``confirmed``, or ``placed`` is
    retracted) it is still the same, single notification. Every applied transition
    also goes to the partner webhook endpoints that want it.
    """
    intents: dict[str, Intent] = {}
    fired_once: set[str] = set()
    for transition in view.transitions:
        for rule in rules.matching(transition):
            if order is not None and not rule.conditions.allow(
                order.events[transition.event_id].parsed()
            ):
                continue
            if rule.once:
                if rule.name in fired_once:
                    continue
                fired_once.add(rule.name)
            scope = f"order:{order_id}" if rule.once else transition.event_id
            chain = rule.channels
            for rank, channel in enumerate(chain):
                key = f"{scope}:{rule.name}:{channel}"
                intents[key] = Intent(
                    key,
                    transition.event_id,
                    rule.name,
                    rule.template,
                    channel,
                    rule.priority,
                    transition,
                    once=rule.once,
                    fallback_group=f"{scope}:{rule.name}" if rule.fallback else None,
                    fallback_rank=rank if rule.fallback else None,
                    chain=chain,
                    category=rule.category.value,
                    to_ops=rule.audience is Audience.OPS,
                )
        for endpoint in webhooks(source, transition.to_state.value):
            key = f"{transition.event_id}:{WEBHOOK}:{endpoint}"
            intents[key] = Intent(
                key,
                transition.event_id,
                WEBHOOK,
                WEBHOOK,
                WEBHOOK,
                Priority.NORMAL,
                transition,
                endpoint=endpoint,
            )
    if order is not None and rules.estimates:
        for transition in revised_estimates(order, view):
            event = order.events[transition.event_id].parsed()
            for rule in rules.estimates:
                if rule.conditions.allow(event):
                    group = f"{transition.event_id}:{rule.name}"
                    intents.update(rule_intents(rule, transition, group))
    return intents


def rule_intents(rule: Rule, transition: Transition, group: str) -> dict[str, Intent]:
    """The intents of one rule firing for ``transition``, keyed ``group:channel`` (a
    fallback rule's channels share the ``group``)."""
    intents: dict[str, Intent] = {}
    for rank, channel in enumerate(rule.channels):
        key = f"{group}:{channel}"
        intents[key] = Intent(
            key,
            transition.event_id,
            rule.name,
            rule.template,
            channel,
            rule.priority,
            transition,
            fallback_group=group if rule.fallback else None,
            fallback_rank=rank if rule.fallback else None,
            chain=rule.channels,
            to_ops=rule.audience is Audience.OPS,
        )
    return intents


def revised_estimates(order: OrderAggregate, view: OrderView) -> list[Transition]:
    """The shipment events that moved its estimated delivery later than the one before
    (what the customer was last given), as transitions that leave the state as it is."""
    last: dict[str, datetime] = {}
    found: list[Transition] = []
    for stored in counted_events(order, view):
        if stored.shipment_id is None:
            continue
        shipment = stored.parsed().shipment
        eta = shipment.estimated_delivery if shipment else None
        if eta is None:
            continue
        before = last.get(stored.shipment_id)
        last[stored.shipment_id] = eta
        if before is not None and eta > before:
            state = OrderState(stored.state)
            found.append(
                Transition(stored.event_id, stored.shipment_id, state, state, view.derived_state)
            )
    return found


def template_context(
    event: OrderEvent,
    transition: Transition,
    links: Links | None = None,
    *,
    store: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Plain data for templates: no objects with methods, nothing secret. ``links`` are
    the pages the message points to (``links.track``: the order-status page, or
    ``None`` when it is not configured); ``store`` is the event's store as the stores
    file describes it (``StoreBook.view``), or None."""
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
            "first_name": first_name(customer.given_name, customer.name),
            "locale": customer.locale,
            "timezone": customer.timezone,
        },
        "event": {
            "event_id": event.event_id,
            "state": event.state.value,
            "occurred_at": event.occurred_at.isoformat(),
            "reason": event.reason,
            "reason_code": event.reason_code,
        },
        "shipment": shipment,
        "correction": None,
        "links": {"track": None, "unsubscribe": None, "preferences": None, **(links or {})},
        "store": store,
    }


#: context keys that are how a message is delivered, not what it tells: a link changes
#: when an operator moves the service or rotates its secret, and a shop's new logo or
#: sender is not news to correct anyone with
UNTOLD_KEYS = frozenset({"links", "store"})


def told_part(context: dict[str, Any]) -> dict[str, Any]:
    """What of a template context the customer is *told*, for its digest.

    Left out: ``UNTOLD_KEYS``, the greeting's ``customer.first_name`` (derived from the
    name, which stays in), and an unset ``event.reason_code``. The last two also keep the
    digests of messages sent before they existed: a revision that changes nothing the
    customer was told still sends no correction.
    """
    told = {k: v for k, v in context.items() if k not in UNTOLD_KEYS}
    customer = told.get("customer")
    if isinstance(customer, dict) and "first_name" in customer:
        told["customer"] = {k: v for k, v in customer.items() if k != "first_name"}
    event = told.get("event")
    if isinstance(event, dict) and "reason_code" in event and event["reason_code"] is None:
        told["event"] = {k: v for k, v in event.items() if k != "reason_code"}
    return told


def context_digest(context: dict[str, Any]) -> str:
    """What the customer is told, as a hash: a revision that changes it needs a correction."""
    return digest(canonical_json(told_part(context)))


def webhook_body(
    event: OrderEvent,
    transition: Transition,
    delivery_id: str,
    endpoint: str,
    correction: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a partner endpoint receives: the event without the customer's contact
    details (ids only), the transition it caused, and the delivery's own id; the
    event's ``reason_code`` when it has one."""
    shipment = event.shipment
    body: dict[str, Any] = {
        "type": "order.transition",
        "delivery_id": delivery_id,
        "endpoint": endpoint,
        "event": {
            "event_id": event.event_id,
            "source": event.source,
            "order_id": event.order_id,
            "customer_id": event.customer.id,
            "state": event.state.value,
            "occurred_at": event.occurred_at.isoformat(),
            "reason": event.reason,
            "shipment": None
            if shipment is None
            else {
                "id": shipment.id,
                "carrier": shipment.carrier,
                "tracking_number": shipment.tracking_number,
                "tracking_url": shipment.tracking_url,
            },
            "attributes": event.attributes,
        },
        "transition": {
            "from": transition.from_state.value if transition.from_state else None,
            "to": transition.to_state.value,
            "shipment_id": transition.shipment_id,
            "order_state": transition.order_state_after,
        },
        "correction": correction,
    }
    if event.reason_code is not None:
        # only when set: the bodies of events without one (and their digests, which
        # decide partner corrections) stay as they were before reason codes existed
        body["event"]["reason_code"] = event.reason_code
    return body


def recipient_for(
    event: OrderEvent, channel: ChannelSpec, *, chosen: bool = False
) -> tuple[str | None, str]:
    """The customer's address on a channel (the channel picks it), or ``None`` and why
    there is none. ``chosen``: the customer's stored preferences allow the channel, which
    wins over the event's ``customer.channels``."""
    customer = event.customer
    if not chosen and customer.channels is not None and channel.name not in customer.channels:
        return None, f"customer did not opt into {channel.name}"
    if channel.recipient is None:
        return None, f"customers are not told on {channel.name}"
    address = channel.recipient(customer)
    return (address, "") if address else (None, f"customer has no {channel.contact}")
