"""A customer's notification preferences: the document ``/v1/customers/{id}/preferences``
reads and writes, and what planning and sending honour.

What is set here wins over the event's ``customer`` fields; what is left ``null`` (or
absent) leaves the event's value in force. Messages come in two categories, named by
the rule that sends them (``rules.yaml``: ``category``): ``transactional`` (what a
customer must know about their order) can never be switched off entirely, so a list
for it holds at least one channel; ``alerts`` may be an empty list (no alerts at all).

Contacts (``email``, ``phone``) are personal data: never logged, deleted with the
customer (``notifier erase-customer``) and by retention (``store.preferences``).
"""

from __future__ import annotations

from typing import Annotated
from zoneinfo import available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from notifier.contracts.events import Channel, Email, Id, Locale, Phone, TimeZone

#: the categories of ``core.rules.Category``, by name: the category a customer can
#: switch off entirely
ALERTS = "alerts"


def _unique(items: list[str]) -> list[str]:
    if len(set(items)) != len(items):
        raise ValueError("an item is named twice")
    return items


#: a list whose items are each named once
_Unique = AfterValidator(_unique)
_UNIQUE_SCHEMA = Field(json_schema_extra={"uniqueItems": True})
#: the channels of a category, in the order they were given, each once
Channels = Annotated[list[Channel], _Unique, _UNIQUE_SCHEMA]


def _at_least_one(channels: list[str]) -> list[str]:
    if not channels:
        raise ValueError("transactional messages cannot be switched off: keep at least one channel")
    return channels


_AtLeastOne = AfterValidator(_at_least_one)
#: the document says what the validators check, so a client (and the API's own
#: schema test) knows a valid value before sending it
#: an id: no control characters, no space at either end (they are stripped)
_INNER = r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]"
_EDGE = r"[^\x00-\x20\x7f-\x9f\u2028\u2029]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ORDER_ID = WithJsonSchema(
    {
        "type": "string",
        "minLength": 1,
        "maxLength": 200,
        "pattern": rf"^{_EDGE}({_INNER}*{_EDGE})?$",
    }
)
_PHONE = WithJsonSchema({"type": "string", "pattern": r"^\+[1-9][0-9]{6,14}$"})
_LOCALE = WithJsonSchema(
    {"type": "string", "maxLength": 35, "pattern": r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"}
)
_EMAIL = WithJsonSchema(
    {
        "type": "string",
        "maxLength": 254,
        "pattern": rf"^[A-Za-z0-9._%+-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$",
    }
)
_ZONE = WithJsonSchema({"type": "string", "enum": sorted(available_timezones())})
#: a wall-clock time of day, ``HH:MM`` (24 hours)
ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["22:00"])]


class ChannelsByCategory(BaseModel):
    """Which channels each category may use; ``null``: what the event's
    ``customer.channels`` says (every channel the customer has a contact for, unless
    it names some)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transactional: (
        Annotated[Channels, _AtLeastOne, Field(json_schema_extra={"minItems": 1})] | None
    ) = Field(
        default=None,
        description="at least one channel: transactional messages cannot be switched off",
    )
    alerts: Channels | None = Field(default=None, description="[]: no alerts on any channel")

    def of(self, category: str) -> list[str] | None:
        """The channels chosen for ``category``, or None when the event decides."""
        return self.alerts if category == ALERTS else self.transactional


class QuietHours(BaseModel):
    """A stretch of the customer's day without non-urgent messages, in their time zone
    (stored here; applied where sends are scheduled)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: ClockTime
    end: ClockTime


class CustomerPreferences(BaseModel):
    """The whole preferences document of one customer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: ChannelsByCategory = Field(default_factory=ChannelsByCategory)
    #: the channel the customer would rather be told on (stored; rules decide the order)
    preferred_channel: Channel | None = None
    #: contact overrides: these addresses are used instead of the event's
    email: Annotated[Email, _EMAIL] | None = None
    phone: Annotated[Phone, _PHONE] | None = None
    locale: Annotated[Locale, _LOCALE] | None = None
    timezone: Annotated[TimeZone, _ZONE] | None = None
    quiet_hours: QuietHours | None = None
    #: orders the customer asked for no more updates about
    muted_orders: Annotated[
        list[Annotated[Id, _ORDER_ID]], _Unique, _UNIQUE_SCHEMA, Field(max_length=500)
    ] = Field(default_factory=list)

    def muted(self, order_id: str) -> bool:
        """Whether the customer asked for no more updates about ``order_id``."""
        return order_id in self.muted_orders


#: the reason in the ledger of a message about an order the customer muted
MUTED = "muted by customer"
#: the reason of an SMS the provider refused because the customer replied STOP
REPLIED_STOP = "recipient replied STOP"


def opted_out(category: str, channel: str) -> str:
    """The ledger's reason for a message on a channel its customer switched off for
    its category: ``opted out (alerts on sms)`` (no personal data)."""
    return f"opted out ({category} on {channel})"
