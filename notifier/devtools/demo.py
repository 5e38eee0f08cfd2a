"""A built-in demo: a few orders walking through realistic lifecycles, as contract-v1 dicts.

Each call gets a fresh run id in its event ids, so running the demo twice publishes
new events instead of being swallowed by deduplication. Contacts use only
``example.com`` / ``example.org`` addresses and 555 numbers, so nothing real is ever
notified. The orders come from the two shops of ``demo-stores.yaml`` (each event names
its shop in ``attributes.store_id``), so their messages show two brands. Prices are
decimal strings, as shop platforms send them, to keep floats out of money.
"""

from __future__ import annotations

import copy
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from notifier.contracts.events import OrderState

_S = OrderState
#: the three lifecycles, cycled when more orders are asked for
PATTERNS: tuple[tuple[OrderState, ...], ...] = (
    (_S.PLACED, _S.CONFIRMED, _S.SHIPPED, _S.OUT_FOR_DELIVERY, _S.DELIVERED),
    (_S.PLACED, _S.CONFIRMED, _S.CANCELLED),
    (_S.PLACED, _S.CONFIRMED, _S.SHIPPED, _S.DELIVERY_FAILED, _S.OUT_FOR_DELIVERY, _S.DELIVERED),
)
_SHIPMENT_STATES = {_S.SHIPPED, _S.OUT_FOR_DELIVERY, _S.DELIVERED, _S.DELIVERY_FAILED}
_REASONS = {
    _S.CANCELLED: "Cancelled at the customer's request",
    _S.DELIVERY_FAILED: "No one was available to sign for the parcel",
}


@dataclass(frozen=True)
class _Persona:
    """A demo customer and the shop they buy from, in their own locale."""

    key: str
    name: str
    email: str
    locale: str
    timezone: str
    currency: str
    #: the shop's key in the demo stores file (``notifier/devtools/demo-stores.yaml``)
    store_id: str
    store_name: str
    carrier: str
    items: tuple[tuple[str, str], ...]  # (name, unit price)


_PERSONAS = (
    _Persona(
        "ada", "Ada Lovelace", "ada@example.com", "en-US", "America/Los_Angeles", "USD",
        "analytical-coffee", "Analytical Coffee Co.", "UPS",
        (("Single-origin beans 1 kg", "24.50"), ("Pour-over kettle", "39.00")),
    ),
    _Persona(
        "emile", "Émile Nelligan", "emile@example.org", "fr-CA", "America/Toronto", "CAD",
        "boutique-erable", "Boutique Érable", "Postes Canada",
        (("Sirop d'érable 500 ml", "14.95"), ("Tasse en grès", "22.00")),
    ),
    _Persona(
        "grace", "Grace Hopper", "grace@example.com", "en-GB", "Europe/London", "GBP",
        "analytical-coffee", "Analytical Coffee Co.", "Royal Mail",
        (("Earl Grey loose leaf 250 g", "8.75"), ("Cast-iron teapot", "45.00")),
    ),
)  # fmt: skip
_SOURCES = ("shopify", "web")
#: the demo customers' ids, one per persona
DEMO_CUSTOMER_IDS = tuple(f"demo-customer-{persona.key}" for persona in _PERSONAS)


def demo_events(
    orders: int = 3,
    *,
    start: datetime | None = None,
    seed: int = 7,
    run_id: str | None = None,
) -> list[dict[str, Any]]:
    """Events for ``orders`` demo orders, each order's events minutes apart and in order.

    ``seed`` fixes quantities, gaps and tracking numbers; ``run_id`` (random by
    default) only makes event ids fresh. Without ``start`` the first order begins an
    hour and a minute per order ago, so no event lies in the future (notifier refuses
    one more than a few minutes ahead).
    """
    if orders < 1:
        raise ValueError("orders must be at least 1")
    if start is not None and start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    rng = random.Random(seed)
    run = run_id or secrets.token_hex(3)
    begin = start or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1, minutes=orders)
    events: list[dict[str, Any]] = []
    for n in range(orders):
        events += _order_events(n, run, begin + timedelta(minutes=n), rng)
    return events


def _order_events(n: int, run: str, begin: datetime, rng: random.Random) -> list[dict[str, Any]]:
    persona = _PERSONAS[n % len(_PERSONAS)]
    number = 1001 + n
    customer = {
        "id": f"demo-customer-{persona.key}",
        "name": persona.name,
        "email": persona.email,
        "phone": f"+1415555{(100 + n) % 10_000:04d}",
        "push_tokens": [f"demo-token-{persona.key}-{run}"],
        "locale": persona.locale,
        "timezone": persona.timezone,
    }
    zone = ZoneInfo(persona.timezone)
    tracking = f"{persona.carrier[:2].upper()}{rng.randrange(10**9, 10**10)}"
    shipment = {
        "id": f"DEMO-{number}-{run}-S1",
        "carrier": persona.carrier,
        "tracking_number": tracking,
        "tracking_url": f"https://track.example.com/{tracking}",
        "estimated_delivery": _stamp(begin + timedelta(days=2), zone),
    }
    lines = [(name, rng.randint(1, 3), price) for name, price in persona.items]
    items = [{"name": name, "quantity": qty, "price": price} for name, qty, price in lines]
    total = sum((Decimal(price) * qty for _, qty, price in lines), Decimal(0))
    attributes = {
        "items": items,
        "total": f"{total:.2f}",
        "currency": persona.currency,
        "store_id": persona.store_id,
        "store_name": persona.store_name,
    }
    at = begin
    events: list[dict[str, Any]] = []
    for step, state in enumerate(PATTERNS[n % len(PATTERNS)], start=1):
        event: dict[str, Any] = {
            "event_id": f"demo-{run}-{number}-{step}",
            "order_id": f"DEMO-{number}-{run}",
            "source": _SOURCES[n % len(_SOURCES)],
            "state": state.value,
            "occurred_at": _stamp(at, zone),
            "customer": customer,
            "attributes": attributes,
        }
        if state in _SHIPMENT_STATES:
            event["shipment"] = shipment
        if state in _REASONS:
            event["reason"] = _REASONS[state]
        events.append(copy.deepcopy(event))
        at += timedelta(minutes=rng.randint(2, 9))
    return events


def _stamp(moment: datetime, zone: ZoneInfo) -> str:
    """RFC 3339 in the customer's own offset, as a shop in that zone would send it."""
    return moment.astimezone(zone).isoformat(timespec="seconds")
