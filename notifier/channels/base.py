"""The one seam every delivery channel implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol


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
