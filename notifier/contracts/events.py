"""Event contract v1: the JSON body platform teams publish on ``orders.state.<source>``.

The model is strict about what notifier relies on (ids, state, timestamps with an
offset, E.164 phones, BCP 47 locales, IANA time zones) and lenient about what it only
passes to templates (``attributes``). Unknown top-level fields are rejected so that a
typo (``ocurred_at``) is a dead letter with a reason, not a silently ignored field.

Control characters never pass: an identifier or address that holds one (C0, DEL, C1,
U+2028/U+2029) is refused, because a NUL or CR/LF there is a publisher bug or an
attack (header injection); in free text (a name, a reason, a carrier) CR, LF, TAB and
the other line breaks become a space and the rest are dropped, because the customer
should still get their message. What one event may weigh (bytes, nesting, string
length, how far ahead of our clock) is ``contracts.limits``, checked at ingest.
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
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from notifier.contracts.channels import CUSTOMER_CHANNELS
from notifier.contracts.reasons import REASON_CODES, all_reason_codes, reason_code_problem

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

_E164 = re.compile(r"\+[1-9]\d{6,14}")
#: a syntax check only (local@domain.tld, no spaces or control characters); the
#: email-validator package behind pydantic's EmailStr cost a fifth of ingest time
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"[^@\s<>(),;:\"\[\]]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")
_BCP47 = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")
#: what never belongs in an identifier or an address: C0 controls, DEL, C1 controls and
#: the Unicode line and paragraph separators
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: in free text, what reads as a line break or a tab becomes a space...
_BREAK = re.compile("[\t\n\x0b\x0c\r\x85\u2028\u2029]")
#: (a CRLF makes one space, not two)...
_SPACES = re.compile(" {2,}")
#: ...and other control characters are dropped
_DROP = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")
#: what goes from multi-line text: every control character but TAB, LF and CR
_LINES_DROP = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
#: half a UTF-16 pair: JSON's ``\ud800`` escape decodes to it, but it is not text
#: (it cannot be encoded as UTF-8, so it could be neither stored nor sent)
_SURROGATE = re.compile("[\ud800-\udfff]")
NO_CONTROLS = "must not contain control characters (U+0000-U+001F, U+007F-U+009F, U+2028, U+2029)"
NOT_UNICODE = "must be valid Unicode: an unpaired surrogate (\\ud800-\\udfff escape)"


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # OSError: the name is looked up as a file, and 256 characters are too long
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


def _check_locale(value: str) -> str:
    if not _BCP47.fullmatch(value):
        raise ValueError(f"not a BCP 47 language tag: {value!r}")
    return value


def _check_email(value: str) -> str:
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise ValueError(f"not an email address: {value!r}")
    return value


def _check_phone(value: str) -> str:
    if not _E164.fullmatch(value):
        raise ValueError("phone must be E.164, e.g. +14155550123")
    return value


def _plain(value: Any) -> Any:
    """Identifiers and addresses are refused, never repaired: a changed id is another id.

    Checked before pydantic's own string validation, which refuses an unpaired
    surrogate with a message no publisher could act on."""
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise ValueError(NO_CONTROLS)
        if _SURROGATE.search(value):
            raise ValueError(NOT_UNICODE)
    return value


def _cleaned(value: Any) -> Any:
    return clean_text(value) if isinstance(value, str) else value


#: refuse control characters (identifiers, addresses)
PLAIN = BeforeValidator(_plain)
#: repair control characters (free text on one line)
CLEANED = BeforeValidator(_cleaned)


def clean_text(value: str) -> str:
    """Free text as a customer may read it on one line: line breaks and tabs become one
    space, other control characters go, an unpaired surrogate becomes U+FFFD. Text
    without any of them is returned as it is."""
    if not _CONTROL.search(value) and not _SURROGATE.search(value):
        return value
    spaced = _BREAK.sub(" ", _DROP.sub("", _SURROGATE.sub("\ufffd", value)))
    return _SPACES.sub(" ", spaced).strip(" ")


def clean_lines(value: str) -> str:
    """Free text that may run over lines (a gift message in ``attributes``): CR, LF and
    TAB stay, other control characters go, an unpaired surrogate becomes U+FFFD."""
    if not _CONTROL.search(value) and not _SURROGATE.search(value):
        return value
    return _LINES_DROP.sub("", _SURROGATE.sub("\ufffd", value))


Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, strip_whitespace=True),
    PLAIN,
]
PushToken = Annotated[str, StringConstraints(min_length=1, max_length=4096), PLAIN]
Phone = Annotated[str, AfterValidator(_check_phone)]
Email = Annotated[
    str, PLAIN, AfterValidator(_check_email), WithJsonSchema({"type": "string", "format": "email"})
]
#: RFC 5646 asks every implementation to take tags of 35 characters; IANA zone names
#: are shorter than 64
Locale = Annotated[str, StringConstraints(max_length=35), AfterValidator(_check_locale)]
TimeZone = Annotated[str, StringConstraints(max_length=64), PLAIN, AfterValidator(_check_timezone)]


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


#: a person's name as free text: repaired, never refused, for control characters
PersonName = Annotated[str, StringConstraints(max_length=200), CLEANED]
#: a reason code's shape; which codes a state takes is ``contracts.reasons``
ReasonCode = Annotated[
    str,
    StringConstraints(min_length=1, max_length=50),
    PLAIN,
    WithJsonSchema(
        {
            "type": "string",
            "enum": list(all_reason_codes()),
            "description": "why, as a code the templates translate; each state takes its "
            "own list: " + "; ".join(f"{s}: {', '.join(c)}" for s, c in REASON_CODES.items()),
        }
    ),
]


class Customer(BaseModel):
    """Who to tell, and how. Contacts are personal data: never logged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Id
    name: PersonName | None = None
    #: the name to greet them by ("Ada"); without it, one is derived from ``name`` when
    #: it can be (``core.greeting``)
    given_name: PersonName | None = None
    email: Email | None = None
    phone: Phone | None = None
    push_tokens: list[PushToken] = Field(default_factory=list, max_length=20)
    locale: Locale = "en"
    timezone: TimeZone = "UTC"
    #: channels the customer opted into; absent means every channel they have a contact for
    channels: list[Channel] | None = None


class Shipment(BaseModel):
    """The parcel a shipment-level state refers to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Id
    carrier: Annotated[str, StringConstraints(max_length=100), CLEANED] | None = None
    tracking_number: Annotated[str, StringConstraints(max_length=200), PLAIN] | None = None
    tracking_url: Annotated[str, StringConstraints(max_length=2000), PLAIN] | None = None
    estimated_delivery: AwareDatetime | None = None


class OrderEvent(BaseModel):
    """One order-state event, contract v1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Id
    order_id: Id
    source: Annotated[str, StringConstraints(min_length=1, max_length=100), PLAIN]
    state: OrderState
    occurred_at: AwareDatetime
    customer: Customer
    shipment: Shipment | None = None
    reason: Annotated[str, StringConstraints(max_length=1000), CLEANED] | None = None
    #: why, as a code from the state's list (``contracts.reasons``); ``reason`` is the
    #: fallback text when there is none
    reason_code: ReasonCode | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    retracted: bool = False

    @field_validator("reason_code")
    @classmethod
    def _code_of_its_state(cls, code: str | None, info: ValidationInfo) -> str | None:
        state = info.data.get("state")
        if code is None or state is None:  # no state: its own error says so
            return code
        problem = reason_code_problem(OrderState(state).value, code)
        if problem is not None:
            raise ValueError(problem)
        return code

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
    schema["allOf"] = _reason_codes_by_state()
    return schema


def _reason_codes_by_state() -> list[dict[str, Any]]:
    """Which ``reason_code`` each state takes, as JSON Schema conditions."""
    nothing = {"type": "null"}
    conditions: list[dict[str, Any]] = [
        {
            "if": {"properties": {"state": {"const": state}}},
            "then": {"properties": {"reason_code": {"anyOf": [{"enum": list(codes)}, nothing]}}},
        }
        for state, codes in REASON_CODES.items()
    ]
    others = [s.value for s in OrderState if s.value not in REASON_CODES]
    conditions.append(
        {
            "if": {"properties": {"state": {"enum": others}}},
            "then": {"properties": {"reason_code": nothing}},
        }
    )
    return conditions
