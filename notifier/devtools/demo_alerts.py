"""Demo orders for the time rules: stuck in processing, a parcel that stopped moving, a
missed delivery promise. Their events happened long enough ago (``occurred_at`` in the
past) that the shipped rules' timers are already due, so ``notifier dev`` shows the
alerts within a poll or two of ``notifier emit --demo``.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

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
)


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
            if state in ("shipped", "in_transit"):
                event["shipment"] = {
                    "id": f"{order_id}-S1",
                    "carrier": "UPS",
                    "tracking_number": f"1Z{run.upper()}{suffix}",
                    "tracking_url": f"https://track.example.com/1Z{run.upper()}{suffix}",
                    "estimated_delivery": (now + eta).isoformat(),
                }
            events.append(event)
    return events
