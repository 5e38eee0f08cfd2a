"""The one seam every delivery channel implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import ClassVar, Protocol

#: a provider's Retry-After longer than this is cut short: an hour-long outage is the
#: breaker's and the backoff's business, not a reason to park a message for days
MAX_RETRY_AFTER_S = 3600.0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value (delta-seconds or HTTP-date), capped at
    :data:`MAX_RETRY_AFTER_S`; None when absent or unreadable. Every channel reads its
    provider's header with this."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.replace(".", "", 1).isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, origin unknown
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A rendered notification, ready for one provider. ``to`` is personal data."""

    notification_id: str
    channel: str
    to: str
    text: str
    subject: str | None = None
    html: str | None = None
    locale: str = "en"
    #: the order it is about, the template and the state it tells (never contacts)
    order_id: str = ""
    template: str = ""
    state: str = ""
    #: extra provider hints (push collapse key, SMS sender); never contacts
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """What the provider answered when it accepted the message."""

    provider: str
    provider_message_id: str


class ChannelAdapter(Protocol):
    """A provider behind a channel.

    ``send`` either returns a receipt or raises ``TransientDeliveryError`` (retry later)
    or ``PermanentDeliveryError`` (never retry); it must never log ``message.to``.
    """

    name: ClassVar[str]
    provider: ClassVar[str]
    #: one circuit breaker per recipient (webhook endpoints) rather than per provider
    breaker_per_recipient: ClassVar[bool]

    async def start(self) -> None:
        """Open connections; called once before the first send."""

    async def send(self, message: OutboundMessage) -> SendReceipt:
        """Hand one message to the provider."""

    async def close(self) -> None:
        """Close connections; in-flight sends have finished when this returns."""
