"""Event contract v1: the JSON body platform teams publish on ``orders.state.<source>``.

The model is strict about what notifier relies on (ids, state, timestamps with an
offset, E.164 phones, BCP 47 locales, IANA time zones) and lenient about what it only
passes to templates (``attributes``). Unknown top-level fields are rejected so that a
typo (``ocurred_at``) is a dead letter with a reason, not a silently ignored field.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from notifier.contracts.channels import CUSTOMER_CHANNELS

SCHEMA_VERSION = 1


class OrderState(StrEnum):
    """Canonical states. Shipment-level states apply to the shipment named in the event."""

    #: the customer placed the order
    PLACED = "placed"
    #: the shop accepted it (payment authorised, stock reserved)
    CONFIRMED = "confirmed"
    #: being picked and packed
    PROCESSING = "processing"
    #: paused by the shop (fraud check, missing stock); reason says why
    ON_HOLD = "on_hold"
    #: a shipment left the warehouse
    SHIPPED = "shipped"
    #: the carrier scanned it on its way
    IN_TRANSIT = "in_transit"
    #: on the van today
    OUT_FOR_DELIVERY = "out_for_delivery"
    #: handed over
    DELIVERED = "delivered"
    #: the carrier could not deliver it; it may be retried
    DELIVERY_FAILED = "delivery_failed"
    #: the order was cancelled before delivery
    CANCELLED = "cancelled"
    #: a shipment came back to the shop
    RETURNED = "returned"
    #: money went back to the customer
    REFUNDED = "refunded"


SHIPMENT_STATES: frozenset[OrderState] = frozenset(
    {
        OrderState.SHIPPED,
        OrderState.IN_TRANSIT,
        OrderState.OUT_FOR_DELIVERY,
        OrderState.DELIVERED,
        OrderState.DELIVERY_FAILED,
        OrderState.RETURNED,
    }
)

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
#: a syntax check only (local@domain.tld, no spaces or control characters); the
#: email-validator package behind pydantic's EmailStr cost a fifth of ingest time
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^[^@\s<>(),;:\"\[\]]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$")
_BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


def _check_locale(value: str) -> str:
    if not _BCP47.match(value):
        raise ValueError(f"not a BCP 47 language tag: {value!r}")
    return value


def _check_email(value: str) -> str:
    if len(value) > 254 or not _EMAIL.match(value):
        raise ValueError(f"not an email address: {value!r}")
    return value


def _check_phone(value: str) -> str:
    if not _E164.match(value):
        raise ValueError("phone must be E.164, e.g. +14155550123")
    return value


Id = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Phone = Annotated[str, AfterValidator(_check_phone)]
Email = Annotated[
    str, AfterValidator(_check_email), WithJsonSchema({"type": "string", "format": "email"})
]
Locale = Annotated[str, AfterValidator(_check_locale)]
TimeZone = Annotated[str, AfterValidator(_check_timezone)]


def _check_channel(value: str) -> str:
    if value not in CUSTOMER_CHANNELS:
        raise ValueError(f"Input should be one of {', '.join(CUSTOMER_CHANNELS)}")
    return value


#: a delivery channel a customer can opt into: one registered in ``contracts.channels``
Channel = Annotated[
    str,
    AfterValidator(_check_channel),
    WithJsonSchema({"type": "string", "enum": list(CUSTOMER_CHANNELS)}),
]


class Customer(BaseModel):
    """Who to tell, and how. Contacts are personal data: never logged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Id
    name: str | None = Field(default=None, max_length=200)
    email: Email | None = None
    phone: Phone | None = None
    push_tokens: list[Annotated[str, StringConstraints(min_length=1, max_length=4096)]] = Field(
        default_factory=list, max_length=20
    )
    locale: Locale = "en"
    timezone: TimeZone = "UTC"
    #: channels the customer opted into; absent means every channel they have a contact for
    channels: list[Channel] | None = None


class Shipment(BaseModel):
    """The parcel a shipment-level state refers to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Id
    carrier: str | None = Field(default=None, max_length=100)
    tracking_number: str | None = Field(default=None, max_length=200)
    tracking_url: str | None = Field(default=None, max_length=2000)
    estimated_delivery: AwareDatetime | None = None


class OrderEvent(BaseModel):
    """One order-state event, contract v1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Id
    order_id: Id
    source: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    state: OrderState
    occurred_at: AwareDatetime
    customer: Customer
    shipment: Shipment | None = None
    reason: str | None = Field(default=None, max_length=1000)
    attributes: dict[str, Any] = Field(default_factory=dict)
    retracted: bool = False

    @property
    def is_shipment_event(self) -> bool:
        """Whether the state belongs to a shipment rather than to the order itself."""
        return self.state in SHIPMENT_STATES


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema platform teams can validate against before publishing."""
    schema = OrderEvent.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://notifier.dev/schemas/order-event.v1.json"
    schema["title"] = "OrderEvent v1"
    return schema
