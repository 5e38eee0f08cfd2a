"""The one seam every delivery channel implements: an adapter with one async ``send``,
and the ``PLUGIN`` its module declares so that the service can run it.

A channel module (``notifier/channels/<name>.py``) holds, in one place, the provider's
adapter and a :class:`ChannelPlugin`: which settings it needs (and so when it is off),
its limits, its template parts and render check, how it picks the customer's address,
and whether receipts follow a send. It is registered by its name in
``notifier.contracts.channels``; nothing else in the service says the channel's name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import ClassVar, Protocol

from notifier.config import Settings
from notifier.contracts.channels import ChannelSpec, PartnerRoutes, RenderCheck, SenderPicker
from notifier.contracts.feed import NewFeedItem

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
    #: who it comes from, as its ledger row says (its store's ``From``, SMS sender);
    #: None: the channel's own
    sender: str | None = None
    #: where replies go (email), as its ledger row says
    reply_to: str | None = None
    #: an alert's one-click unsubscribe link (RFC 8058; an email's ``List-Unsubscribe``)
    unsubscribe_url: str | None = None


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


class FeedWriter(Protocol):
    """The service's in-app feed, as a channel whose messages never leave the service
    writes to it (``notifier.delivery.feed``). Channels do not reach the store; the
    composition root hands this to them."""

    async def start(self) -> None:
        """Connect what announces new items; called once before the first write."""

    async def write(self, item: NewFeedItem) -> None:
        """Keep ``item`` (once, however often it is written) and announce it to live
        readers; raises ``TransientDeliveryError`` when either cannot be done now."""

    async def close(self) -> None:
        """Let announcements in flight go out, then disconnect."""


@dataclass(frozen=True, slots=True)
class SendLimits:
    """How hard the service may push a channel's provider."""

    #: sends in flight at once
    concurrency: int
    #: sends per second (a token bucket); 0 = unlimited
    rate_per_s: float


@dataclass(frozen=True, slots=True)
class ChannelPlugin:
    """Everything the composition root needs to run one channel, declared by its module.

    Settings are named by their ``Settings`` field (``twilio_from`` is
    ``NOTIFIER_TWILIO_FROM``): the environment variables stay where operators know them.
    """

    spec: ChannelSpec
    #: the settings that must all be set, or the channel is off (said once at start-up)
    requires: tuple[str, ...]
    #: the adapter, from settings that have everything ``requires`` names
    build: Callable[[Settings], ChannelAdapter]
    #: concurrency and rate, from the channel's own settings
    limits: Callable[[Settings], SendLimits]
    #: what a rendering must not be (too long for a push, too many SMS segments): checked
    #: when it is rendered, so it fails with a reason before any send
    render_check: Callable[[Settings], RenderCheck] | None = None
    #: the settings the provider needs to report delivery (``delivered``/``undelivered``
    #: after ``sent``); None: it never does. With them set, a fallback rule waits for it
    receipts_require: tuple[str, ...] | None = None
    #: a permanent failure that calls the recipient dead (an uninstalled app's push token)
    #: is remembered, and later messages to that recipient are suppressed, never sent
    remembers_dead_recipients: bool = False
    #: the setting holding an operations address that alerts are sent to on this channel
    alerts_to: str | None = None
    #: a partner channel: which of the running adapter's endpoints want (source, state)
    routes: Callable[[ChannelAdapter], PartnerRoutes] | None = None
    #: who a store's messages come from on this channel (``NOTIFIER_STORES_FILE``),
    #: decided when a message is rendered and kept on its ledger row; None: the channel
    #: has no sender a store could set
    sender: Callable[[Settings], SenderPicker] | None = None
    #: a channel whose messages stay in the service (the in-app feed): built around the
    #: feed the composition root hands it, rather than by ``build``
    on_feed: Callable[[FeedWriter], ChannelAdapter] | None = None

    @property
    def name(self) -> str:
        """The channel's registered name."""
        return self.spec.name

    def disabled_reason(self, settings: Settings) -> str | None:
        """Why the channel cannot run with ``settings`` (the variables to set), or None."""
        return missing_settings(settings, self.requires)

    def takes_receipts(self, settings: Settings) -> bool:
        """Whether its provider will report delivery after accepting a message."""
        need = self.receipts_require
        return need is not None and missing_settings(settings, need) is None


def missing_settings(settings: Settings, names: Sequence[str]) -> str | None:
    """``NOTIFIER_A, NOTIFIER_B are not set``, naming each unset one; None when all are set."""
    missing = [f"NOTIFIER_{name.upper()}" for name in names if not getattr(settings, name)]
    if not missing:
        return None
    verb = "is" if len(missing) == 1 else "are"
    return f"{', '.join(missing)} {verb} not set"
