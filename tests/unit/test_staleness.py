"""The staleness table, walked: which messages a later state of the order makes wrong."""

from __future__ import annotations

import pytest

from notifier.contracts.events import OrderState
from notifier.core.staleness import SHIPMENT_PROGRESS, stale_reason

S = OrderState

CASES = [
    # message state, shipment now, order now, reason (None: still holds)
    ("out_for_delivery", "delivered", None, "stale: shipment is delivered"),
    ("shipped", "delivered", None, "stale: shipment is delivered"),
    ("in_transit", "returned", None, "stale: shipment is returned"),
    ("delivery_failed", "delivered", None, "stale: shipment is delivered"),
    ("out_for_delivery", "out_for_delivery", None, None),  # its own state: current
    ("shipped", "in_transit", None, None),  # moved on, but not past what it says
    ("delivery_failed", "out_for_delivery", None, None),  # a retry of the delivery
    # the van came and went: "on its way today" is over, the failure is the news
    ("out_for_delivery", "delivery_failed", None, "stale: shipment is delivery_failed"),
    ("shipped", "delivery_failed", None, None),
    ("delivered", "returned", None, None),  # "delivered" was true, and stays news
    ("returned", "returned", None, None),
    ("confirmed", None, "cancelled", "stale: order is cancelled"),
    ("shipped", "shipped", "cancelled", "stale: order is cancelled"),
    ("on_hold", None, "cancelled", "stale: order is cancelled"),
    ("cancelled", None, "cancelled", None),
    ("refunded", None, "cancelled", None),
    ("confirmed", None, "processing", None),
    ("confirmed", None, "refunded", None),  # a refund alone ends nothing (returns)
    ("delivered", "delivered", "refunded", None),
    ("not_a_state", "delivered", "cancelled", None),  # unknown: never judged
    ("shipped", "no_such_state", None, None),
]


@pytest.mark.parametrize(("message", "shipment", "order", "expected"), CASES, ids=str)
def test_stale_reason(
    message: str, shipment: str | None, order: str | None, expected: str | None
) -> None:
    assert stale_reason(message, shipment_state=shipment, order_state=order) == expected


@pytest.mark.parametrize("state", sorted(SHIPMENT_PROGRESS))
@pytest.mark.parametrize("done", [S.DELIVERED, S.RETURNED])
def test_every_progress_message_is_stale_once_its_shipment_is_done(state: S, done: S) -> None:
    assert stale_reason(state, shipment_state=done, order_state=None) is not None


@pytest.mark.parametrize("state", sorted(set(S) - {S.CANCELLED, S.REFUNDED}))
def test_after_cancelled_only_cancelled_and_refunded_hold(state: S) -> None:
    assert stale_reason(state, shipment_state=None, order_state="cancelled") is not None
