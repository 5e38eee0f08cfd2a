"""What a channel worker is configured with: its provider limits and what all share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """How hard one channel may push its provider."""

    concurrency: int = 4
    rate_per_s: float = 0.0
    breaker_failures: int = 5
    breaker_open_s: float = 30.0


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """What every channel worker shares."""

    batch_size: int = 50
    lease_s: float = 60.0
    fetch_wait_s: float = 0.05
    #: channels whose "sent" is not the last word because a delivery receipt follows
    #: (SMS, when Twilio has a callback URL): a fallback rule waits for the receipt
    receipt_channels: frozenset[str] = frozenset()
    #: channels whose provider can call a recipient dead (an uninstalled app's push token):
    #: it is remembered, and later messages to it are suppressed without a send
    dead_recipient_channels: frozenset[str] = frozenset()
