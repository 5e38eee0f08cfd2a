"""Whether and when a planned row goes out: stale ones never, quiet-hours ones later.

Run by the pipeline over the rows a batch planned or revised for one order, once the
batch's events are all applied, so a row is judged against where the order ended up
(not where it was when its own event arrived):

* a row the order has already moved past is ``suppressed`` with a ``stale: …`` reason
  (``staleness.py``): of ``out_for_delivery`` and ``delivered`` arriving together,
  only ``delivered`` is queued;
* a ``normal``/``low`` row on a channel that keeps quiet hours, planned inside the
  customer's window, gets ``not_before`` = the end of it (``quiet_hours.py``).

Corrections and partner webhooks are neither: a correction sets the record straight
about what was told (it must go), and partners want every transition, at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from notifier.contracts.channels import ChannelSpec
from notifier.contracts.events import OrderState
from notifier.core.intents import WEBHOOK
from notifier.core.lifecycle import OrderView, shipment_key
from notifier.core.model import NotificationStatus, OrderAggregate
from notifier.core.plan import NewNotification
from notifier.core.quiet_hours import QuietHours
from notifier.core.staleness import stale_reason

#: statuses of a row that may still go out on its own
_MAY_GO = frozenset({NotificationStatus.QUEUED, NotificationStatus.STANDBY})


def is_exempt(channel: str, idempotency_key: str) -> bool:
    """Partner webhooks and corrections are never judged stale nor held."""
    return channel == WEBHOOK or ":correction:" in idempotency_key


def time_rows(
    rows: Iterable[NewNotification],
    order: OrderAggregate,
    view: OrderView,
    *,
    quiet: QuietHours,
    channels: Mapping[str, ChannelSpec],
    now: datetime,
) -> None:
    """Suppress the stale rows and hold the quiet-hours ones, in place."""
    for row in rows:
        if row.status not in _MAY_GO or is_exempt(row.channel, row.idempotency_key):
            continue
        stored = order.events[row.event_id]
        shipment = _shipment_state(view, row.state, stored.shipment_id)
        order_state = view.order_state.value if view.order_state else None
        why = stale_reason(row.state, shipment_state=shipment, order_state=order_state)
        if why is not None:
            row.status = NotificationStatus.SUPPRESSED
            row.last_error = why
            continue
        spec = channels.get(row.channel)
        if spec is None or not spec.quiet_hours or quiet.off:
            continue  # never held: no need to read the customer's time zone
        row.not_before = quiet.hold_until(
            customer_id=row.customer_id,
            timezone=stored.parsed().customer.timezone,
            priority=row.priority,
            held_channel=True,
            now=now,
        )


def _shipment_state(view: OrderView, state: str, shipment_id: str | None) -> str | None:
    try:
        key = shipment_key(OrderState(state), shipment_id)
    except ValueError:
        return None
    found = view.shipments.get(key) if key is not None else None
    return found.value if found is not None else None
