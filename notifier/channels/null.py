"""Channels that accept every message at once, in process, without a provider.

For benchmarks (``notifier bench`` measures ingest "with sends excluded" this way) and
load tests: everything else (rendering, the ledger, the dispatch queues, claims, acks)
runs as in production. Turned on per channel by ``NOTIFIER_NULL_CHANNELS``; the
service says so loudly at start-up, because nobody is told anything.
"""

from __future__ import annotations

from functools import cache
from typing import ClassVar

from notifier.channels.base import ChannelAdapter, OutboundMessage, SendReceipt


class NullChannel:
    """Accepts instantly; the receipt's provider is ``null``."""

    name: ClassVar[str] = "null"
    provider: ClassVar[str] = "null"
    breaker_per_recipient: ClassVar[bool] = False

    async def start(self) -> None:
        """Nothing to open."""

    async def send(self, message: OutboundMessage) -> SendReceipt:
        """Accept ``message`` without looking at its recipient."""
        return SendReceipt(provider=self.provider, provider_message_id=message.notification_id)

    async def close(self) -> None:
        """Nothing to close."""


@cache
def _null_class(channel: str) -> type[NullChannel]:
    # ``name`` is a class attribute of every adapter, so each channel gets its own class
    return type(f"Null{channel.title()}Channel", (NullChannel,), {"name": channel})


def null_channel(channel: str) -> ChannelAdapter:
    """A null adapter that stands in for ``channel``'s provider."""
    return _null_class(channel)()
