"""What a correction tells: which message it corrects, and what changed since.

"Our last message was inaccurate" leaves the customer to guess what was wrong. A
correction names the message it corrects (its subject or title, and when it was sent)
and lists what changed between the version of the event the customer was told about
and the one that holds now: the shipment's tracking number, carrier, tracking link and
estimated delivery, and the state. Templates see it as ``correction``:

    previous   what we said: template, state, subject (None for an SMS), sent_at, channel
    current    what holds now: template (None when nothing is due any more), state
    retracted  the event was withdrawn by its source: the message should be ignored
    changes    field → {"old": …, "new": …}, only the fields that changed

Pure: plain data in, plain data out.
"""

from __future__ import annotations

from typing import Any

from notifier.contracts.events import OrderEvent, Shipment
from notifier.core.model import StoredNotification

#: the shipment fields a correction reports, in the order templates list them
SHIPMENT_FIELDS = ("tracking_number", "carrier", "tracking_url", "estimated_delivery")


def correction_context(
    told: StoredNotification,
    before: OrderEvent,
    after: OrderEvent,
    *,
    current_state: str,
    current_template: str | None,
    retracted: bool,
) -> dict[str, Any]:
    """The ``correction`` a template sees for ``told``, which was about ``before``."""
    changes: dict[str, dict[str, Any]] = {}
    if not retracted:
        old, new = _shipment_values(before.shipment), _shipment_values(after.shipment)
        for name in SHIPMENT_FIELDS:
            if old[name] != new[name]:
                changes[name] = {"old": old[name], "new": new[name]}
    if told.state != current_state:
        changes["state"] = {"old": told.state, "new": current_state}
    return {
        "previous": {
            "template": told.template,
            "state": told.state,
            "subject": told.subject,
            "sent_at": told.sent_at.isoformat() if told.sent_at else None,
            "channel": told.channel,
        },
        "current": {"template": current_template, "state": current_state},
        "retracted": retracted,
        "changes": changes,
    }


def _shipment_values(shipment: Shipment | None) -> dict[str, str | None]:
    if shipment is None:
        return dict.fromkeys(SHIPMENT_FIELDS)
    eta = shipment.estimated_delivery
    return {
        "tracking_number": shipment.tracking_number,
        "carrier": shipment.carrier,
        "tracking_url": shipment.tracking_url,
        "estimated_delivery": eta.isoformat() if eta else None,
    }
