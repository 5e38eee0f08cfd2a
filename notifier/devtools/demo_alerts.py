"""Demo orders for the alerts: stuck in processing, a parcel that stopped moving, a
missed delivery promise, a parcel slower than its carrier usually is, and a failed
delivery attempt. Their events
happened long enough ago (``occurred_at`` in the past) that the shipped rules' timers
are already due, so ``notifier dev`` shows the alerts within a poll or two of
``notifier emit --demo``. The prediction needs a carrier's history first: the demo
brings one (``HISTORY`` deliveries of Colissimo, two days each, for a customer with no
contact, so nobody is told about them), and ``notifier dev`` relearns every 5 s.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from notifier.contracts.events import OrderState

#: (order suffix, rule it shows, [(state, how long ago)], estimated delivery from now)
_STORIES: tuple[tuple[str, str, tuple[tuple[str, timedelta], ...], timedelta], ...] = (
    (
        "STUCK",
        "processing_stuck",
        (("placed", timedelta(hours=50)), ("processing", timedelta(hours=49))),
        timedelta(days=3),
    ),
    (
        "SILENT",
        "parcel_silent",
        (
            ("placed", timedelta(hours=30)),
            ("shipped", timedelta(hours=26)),
            ("in_transit", timedelta(hours=25)),
        ),
        timedelta(days=2),
    ),
    (
        "LATE",
        "promise_missed",
        (("placed", timedelta(days=4)), ("shipped", timedelta(hours=3))),
        -timedelta(hours=13),
    ),
    (
        "FAILED",
        "delivery_failed",
        (
            ("placed", timedelta(hours=30)),
            ("shipped", timedelta(hours=26)),
            ("out_for_delivery", timedelta(hours=3)),
            ("delivery_failed", timedelta(hours=1)),
        ),
        timedelta(days=1),
    ),
)


#: deliveries in the demo's history: above NOTIFIER_PREDICTION_MIN_SAMPLE's default (30)
HISTORY = 32


def _history(now: datetime, run: str) -> list[dict[str, Any]]:
    """Delivered Colissimo parcels of the past weeks, 40 to 48 hours on the way."""
    events: list[dict[str, Any]] = []
    for n in range(HISTORY):
        order_id = f"DEMO-HISTORY-{run}-{n}"
        shipped = now - timedelta(days=40 - n, hours=n % 7)
        steps = (
            (OrderState.PLACED.value, shipped - timedelta(hours=20)),
            (OrderState.SHIPPED.value, shipped),
            (OrderState.DELIVERED.value, shipped + timedelta(hours=40 + n % 9)),
        )
        for state, at in steps:
            event: dict[str, Any] = {
                "event_id": f"demo-{run}-history-{n}-{state}",
                "order_id": order_id,
                "source": "web",
                "state": state,
                "occurred_at": at.isoformat(),
                # no contact, and opted into nothing else: the history tells nobody
                "customer": {"id": "demo-history", "channels": ["email"]},
                "attributes": {"store_id": "boutique-erable", "demo_shows": "history"},
            }
            if state != "placed":
                event["shipment"] = {"id": f"{order_id}-S1", "carrier": "Colissimo"}
            events.append(event)
    return events


def _slow_parcel(now: datetime, run: str, customer: dict[str, Any]) -> list[dict[str, Any]]:
    """Shipped three days ago, scanned two hours ago, promised in two days: past the
    carrier's 90th percentile (48 h) while the promise is still ahead."""
    order_id = f"DEMO-SLOW-{run}"
    shipment = {
        "id": f"{order_id}-S1",
        "carrier": "Colissimo",
        "tracking_number": f"6A{run.upper()}SLOW",
        "tracking_url": f"https://track.example.com/6A{run.upper()}SLOW",
        "estimated_delivery": (now + timedelta(days=2)).isoformat(),
    }
    steps = (
        ("placed", timedelta(days=4), None),
        ("shipped", timedelta(hours=72), shipment),
        ("in_transit", timedelta(hours=2), shipment),
    )
    return [
        {
            "event_id": f"demo-{run}-slow-{step}",
            "order_id": order_id,
            "source": "web",
            "state": state,
            "occurred_at": (now - ago).isoformat(),
            "customer": customer,
            "attributes": {
                "store_id": "analytical-coffee",
                "store_name": "Analytical Coffee Co.",
                "demo_shows": "predicted_late",
            },
            **({"shipment": ship} if ship else {}),
        }
        for step, (state, ago, ship) in enumerate(steps, start=1)
    ]


def alert_events(*, now: datetime | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
    """Events for one order per time rule, each order's alert due by ``now``."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    run = run_id or secrets.token_hex(3)
    events: list[dict[str, Any]] = []
    for suffix, rule, steps, eta in _STORIES:
        order_id = f"DEMO-{suffix}-{run}"
        customer = {
            "id": "demo-customer-ada",
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "push_tokens": [f"demo-token-ada-{run}"],
            "locale": "en-US",
            "timezone": "America/Los_Angeles",
        }
        for step, (state, ago) in enumerate(steps, start=1):
            event: dict[str, Any] = {
                "event_id": f"demo-{run}-{suffix.lower()}-{step}",
                "order_id": order_id,
                "source": "web",
                "state": state,
                "occurred_at": (now - ago).isoformat(),
                "customer": customer,
                "attributes": {
                    "store_id": "analytical-coffee",
                    "store_name": "Analytical Coffee Co.",
                    "demo_shows": rule,
                },
            }
            if state == "delivery_failed":
                event["reason"] = "No one was available to sign for the parcel"
            if state in ("shipped", "in_transit", "out_for_delivery", "delivery_failed"):
                event["shipment"] = {
                    "id": f"{order_id}-S1",
                    "carrier": "UPS",
                    "tracking_number": f"1Z{run.upper()}{suffix}",
                    "tracking_url": f"https://track.example.com/1Z{run.upper()}{suffix}",
                    "estimated_delivery": (now + eta).isoformat(),
                }
            events.append(event)
    return _history(now, run) + events + _slow_parcel(now, run, customer)
