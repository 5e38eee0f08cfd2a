"""Never stale: which messages a later state of their order makes wrong, as one table.

A notification still waiting to go out (queued, deferred by quiet hours, or behind a
retry) is suppressed when the order has since moved on so that the message would
mislead: "out for delivery" after the parcel was delivered, "shipped" after the order
was cancelled. The table, read as "a message about ``state`` is stale once …"::

    message state                                   stale once
    shipped, in_transit, out_for_delivery,          its shipment is delivered or returned
      delivery_failed
    out_for_delivery                                its shipment's delivery failed (that
                                                    van has been; the next attempt brings
                                                    a new "out for delivery")
    anything but cancelled and refunded             the order is cancelled

The same table is asked twice: when a batch plans its rows (a batch holding
``out_for_delivery`` and ``delivered`` of one shipment queues only ``delivered``) and
when a dispatcher claims a row (the order moved on while it waited). Corrections,
partner webhooks (partners want every transition) and rows already sent are never
judged; the callers leave them out. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping

from notifier.contracts.events import OrderState

S = OrderState

#: messages about a shipment on its way: wrong once that shipment has arrived or gone back
SHIPMENT_PROGRESS = frozenset({S.SHIPPED, S.IN_TRANSIT, S.OUT_FOR_DELIVERY, S.DELIVERY_FAILED})
#: shipment states that end its progress
SHIPMENT_DONE = frozenset({S.DELIVERED, S.RETURNED})
#: a message about one round of delivery, wrong once that round ended without delivery
ROUND_ENDED: Mapping[OrderState, frozenset[OrderState]] = {
    S.OUT_FOR_DELIVERY: frozenset({S.DELIVERY_FAILED}),
}
#: order states after which only these messages still hold
ORDER_ENDED: Mapping[OrderState, frozenset[OrderState]] = {
    S.CANCELLED: frozenset({S.CANCELLED, S.REFUNDED}),
}
#: the prefix of every stale reason in the ledger (``last_error``)
STALE = "stale"


def stale_reason(
    message_state: str,
    *,
    shipment_state: str | None,
    order_state: str | None,
) -> str | None:
    """Why a message about ``message_state`` is stale, or ``None`` while it still holds.

    ``shipment_state`` is the current state of the shipment the message is about (None
    for an order-level message or an unknown shipment), ``order_state`` the order's
    current order-level state. Unknown states are never stale.
    """
    state = _state(message_state)
    if state is None:
        return None
    ended = _state(order_state)
    if ended is not None and ended in ORDER_ENDED and state not in ORDER_ENDED[ended]:
        return f"{STALE}: order is {ended.value}"
    shipment = _state(shipment_state)
    if state in SHIPMENT_PROGRESS and shipment in SHIPMENT_DONE:
        return f"{STALE}: shipment is {shipment.value}"
    if shipment is not None and shipment in ROUND_ENDED.get(state, ()):
        return f"{STALE}: shipment is {shipment.value}"
    return None


def _state(value: str | None) -> OrderState | None:
    if value is None:
        return None
    try:
        return OrderState(value)
    except ValueError:
        return None
