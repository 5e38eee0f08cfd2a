"""Stored preferences applied to one message as it is planned: whether the customer
still wants it on this channel, and the contacts and language it goes out with.

Pure, like every stage in ``notifier.core``: the batch loads the preferences of its
customers in one query (``store.preferences``) and drafting asks here. What a
preference sets wins over the event's ``customer``; what it leaves unset does not
change the event. The same check runs again when a queued message is claimed
(``delivery.optouts``), so an opt-out made after planning still holds.
"""

from __future__ import annotations

from collections.abc import Mapping

from notifier.contracts.events import OrderEvent
from notifier.contracts.preferences import MUTED, CustomerPreferences, opted_out

#: customer id → their stored preferences (customers without any are absent)
PreferenceBook = Mapping[str, CustomerPreferences]


def refusal(
    prefs: CustomerPreferences | None, order_id: str, channel: str, category: str
) -> str | None:
    """Why the customer does not want this message (the ledger's reason), or None.

    A muted order silences every channel; a category's channel list, when the customer
    set one, names the channels it may use."""
    if prefs is None:
        return None
    if prefs.muted(order_id):
        return MUTED
    chosen = prefs.channels.of(category)
    if chosen is not None and channel not in chosen:
        return opted_out(category, channel)
    return None


def personalised(event: OrderEvent, prefs: CustomerPreferences | None) -> OrderEvent:
    """``event`` with the customer's stored contacts, locale and time zone in place of
    its own where they are set; the same event when nothing is."""
    if prefs is None:
        return event
    overrides = {
        key: value
        for key, value in (
            ("email", prefs.email),
            ("phone", prefs.phone),
            ("locale", prefs.locale),
            ("timezone", prefs.timezone),
        )
        if value is not None
    }
    if not overrides:
        return event
    customer = event.customer.model_copy(update=overrides)
    return event.model_copy(update={"customer": customer})
