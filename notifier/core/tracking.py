"""What the shopper's order-status page shows, from the order's stored history. Pure.

The page shows the order's state, each shipment (carrier, tracking number, the
carrier's tracking link, the estimated delivery), a timeline of what happened (the
applied events, newest first) and the shop's contact, in the customer's language
and time zone as the latest event gives them. Retracted events are left out.

An erased customer's events keep no contact, name or attribute
(``store.maintenance.erase_customer``); such an order shows nothing, as if it were
unknown. An order whose events never named any contact reads the same way: no
message (and so no link to the page) could have reached its customer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: the languages the page is written in; any other locale reads it in the first
PAGE_LANGUAGES = ("en", "fr")
#: what a shop's contact may show; a logo is left out (the page loads nothing from
#: elsewhere)
CONTACT_FIELDS = ("name", "support_email", "support_phone", "website")
_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_WEB = re.compile(r"https?://\S+")

#: the shop's branding for an order, from its latest event's source and attributes
#: (``None``: no store is known; the page then names ``attributes.store_name``)
StoreFor = Callable[[str, Mapping[str, Any]], Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event of an order's history as the page reads it."""

    seq: int
    state: str
    shipment_id: str | None
    occurred_at: datetime
    outcome: str
    retracted: bool
    #: the event as received (scrubbed by erasure), JSON
    payload: str


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """An order's current states and its whole history, oldest first."""

    order_id: str
    state: str
    order_state: str | None
    #: shipment key → its state
    shipments: dict[str, str]
    events: list[StoredEvent]


def page_language(locale: str | None) -> str:
    """The page language for a BCP 47 tag: its language if the page has it, else English."""
    language = (locale or "").split("-")[0].split("_")[0].lower()
    return language if language in PAGE_LANGUAGES else PAGE_LANGUAGES[0]


def order_page(record: OrderRecord, *, store_for: StoreFor | None = None) -> dict[str, Any] | None:
    """The page's plain data, or ``None`` when there is nothing to show (every event
    retracted, or the customer erased)."""
    live = [(e, _body(e)) for e in record.events if not e.retracted]
    if not live or all(_erased(body) for _, body in live):
        return None
    latest = live[-1][1]
    customer = latest.get("customer") or {}
    attributes = latest.get("attributes") or {}
    locale = str(customer.get("locale") or PAGE_LANGUAGES[0])
    store = store_for(str(latest.get("source") or ""), attributes) if store_for else None
    return {
        "order": {
            "id": record.order_id,
            "state": record.state,
            "placed_at": live[0][0].occurred_at.isoformat(),
        },
        "customer": {"locale": locale, "timezone": str(customer.get("timezone") or "UTC")},
        "lang": page_language(locale),
        "shipments": [_shipment(key, state, live) for key, state in record.shipments.items()],
        "timeline": _timeline(live, list(record.shipments)),
        "store": _contact(store, attributes),
    }


def _body(event: StoredEvent) -> dict[str, Any]:
    try:
        body = json.loads(event.payload)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


#: what a customer record keeps after erasure: everything else is a name or a contact
_KEPT_BY_ERASURE = frozenset({"id", "locale", "timezone", "channels"})


def _erased(body: Mapping[str, Any]) -> bool:
    customer = body.get("customer") or {}
    told = [v for k, v in customer.items() if k not in _KEPT_BY_ERASURE]
    return not body.get("attributes") and not any(told)


def _shipment(
    key: str, state: str, live: list[tuple[StoredEvent, dict[str, Any]]]
) -> dict[str, Any]:
    """A shipment's latest word on each detail: a later event that leaves one out does
    not take it away."""
    found: dict[str, Any] = {
        "id": key,
        "state": state,
        "carrier": None,
        "tracking_number": None,
        "tracking_url": None,
        "estimated_delivery": None,
    }
    for event, body in live:
        parcel = body.get("shipment")
        if event.shipment_id != key or not isinstance(parcel, dict):
            continue
        for name in ("carrier", "tracking_number", "tracking_url", "estimated_delivery"):
            if parcel.get(name):
                found[name] = str(parcel[name])
    if found["tracking_url"] and not _WEB.fullmatch(found["tracking_url"]):
        found["tracking_url"] = None  # only a web address becomes a link
    found["estimated_delivery"] = _moment(found["estimated_delivery"])
    return found


def _moment(value: str | None) -> str | None:
    """An ISO 8601 moment written as the page's other moments are (``+00:00``)."""
    try:
        return datetime.fromisoformat(value).isoformat() if value else None
    except ValueError:
        return None


def _timeline(
    live: list[tuple[StoredEvent, dict[str, Any]]], parcels: list[str]
) -> list[dict[str, Any]]:
    """The applied events, newest first (by when they happened, then by arrival); a
    shipment's event names its parcel (by number, as the page lists them) when the
    order has more than one."""
    number = {key: i for i, key in enumerate(parcels, 1)} if len(parcels) > 1 else {}
    applied = [(e, body) for e, body in live if e.outcome == "applied"]
    applied.sort(key=lambda pair: (pair[0].occurred_at, pair[0].seq), reverse=True)
    return [
        {
            "state": e.state,
            "occurred_at": e.occurred_at.isoformat(),
            "parcel": number.get(e.shipment_id or ""),
            "reason": body.get("reason") or None,
        }
        for e, body in applied
    ]


def _contact(store: Mapping[str, Any] | None, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The shop's name and how to reach it; an unusable brand colour or website is left
    out rather than written into the page."""
    if store is None:
        name = attributes.get("store_name")
        store = {"name": name} if isinstance(name, str) else {}
    contact: dict[str, Any] = {k: _text(store.get(k)) for k in CONTACT_FIELDS}
    if contact["website"] and not _WEB.fullmatch(contact["website"]):
        contact["website"] = None
    color = _text(store.get("brand_color"))
    contact["brand_color"] = color if color and _COLOR.fullmatch(color) else None
    return contact


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
