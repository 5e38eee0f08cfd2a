"""What the channel plug-ins and the settings make: the adapters, their limits, the
render checks, who each message is sent as, the partner routes and the alert sinks.
Part of the composition root (``notifier.app``); nothing here connects or starts."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from notifier.channels.base import ChannelAdapter, ChannelPlugin, FeedWriter, missing_settings
from notifier.channels.null import null_channel
from notifier.channels.registry import registered
from notifier.config import Settings
from notifier.contracts.channels import SenderPicker
from notifier.core.drafts import Check
from notifier.core.intents import WebhookRoutes
from notifier.delivery.alerts import (
    AlertSink,
    channel_sink,
    webhook_sink,
)
from notifier.delivery.dispatcher import (
    ChannelLimits,
)

log = logging.getLogger("notifier")


def build_channels(
    settings: Settings,
    plugins: Iterable[ChannelPlugin] | None = None,
    *,
    feed: FeedWriter | None = None,
) -> dict[str, ChannelAdapter]:
    """Every channel that has what it needs; the others are off, said once at start-up.

    ``feed``: the service's in-app feed, for a channel whose messages stay in it."""
    channels: dict[str, ChannelAdapter] = {}
    for plugin in registered() if plugins is None else plugins:
        name = plugin.name
        if name in settings.null_channel_names:
            channels[name] = null_channel(name)
            log.warning(
                "%s channel is NULL (NOTIFIER_NULL_CHANNELS): messages are recorded as "
                "sent, but nobody receives them",
                name,
            )
        elif plugin.on_feed is not None:
            if feed is None:
                log.warning("%s channel disabled: no feed to write to", name)
            else:
                channels[name] = plugin.on_feed(feed)
        elif (reason := plugin.disabled_reason(settings)) is None:
            channels[name] = plugin.build(settings)
            if plugin.receipts_require is not None and not plugin.takes_receipts(settings):
                log.warning(
                    "%s: %s delivery receipts are off",
                    missing_settings(settings, plugin.receipts_require),
                    name,
                )
        else:
            log.warning("%s channel disabled: %s", name, reason)
    return channels


def render_checks(settings: Settings, plugins: Iterable[ChannelPlugin]) -> dict[str, Check]:
    """What each channel cannot send, checked when a notification is rendered."""
    return {p.name: p.render_check(settings) for p in plugins if p.render_check is not None}


def sender_pickers(settings: Settings, plugins: Iterable[ChannelPlugin]) -> dict[str, SenderPicker]:
    """Per channel, who a store's message is sent as (its rule, from the settings)."""
    return {p.name: p.sender(settings) for p in plugins if p.sender is not None}


def partner_routes(
    plugins: Iterable[ChannelPlugin], channels: Mapping[str, ChannelAdapter]
) -> WebhookRoutes:
    """The endpoints of the partner channel, if it is on, as the pipeline asks for them."""
    for plugin in plugins:
        if plugin.routes is not None and plugin.name in channels:
            return plugin.routes(channels[plugin.name])
    return lambda _source, _state: ()


def alert_sinks(
    settings: Settings, plugins: Iterable[ChannelPlugin], channels: Mapping[str, ChannelAdapter]
) -> list[AlertSink]:
    """Where operations alerts go: an ops address on a channel (email), a webhook."""
    sinks: list[AlertSink] = []
    for plugin in plugins:
        if plugin.alerts_to is None or not (to := getattr(settings, plugin.alerts_to)):
            continue
        if plugin.name in channels:
            sinks.append(channel_sink(channels[plugin.name], to))
        else:
            log.warning(
                "NOTIFIER_%s is set but the %s channel is off",
                plugin.alerts_to.upper(),
                plugin.name,
            )
    if settings.alert_webhook_url:
        sinks.append(webhook_sink(settings.alert_webhook_url))
    if not sinks:
        log.info(
            "no ops alert sink (NOTIFIER_ALERT_EMAIL / NOTIFIER_ALERT_WEBHOOK_URL): "
            "delivery-rate alerts are logged only"
        )
    return sinks


def channel_limits(settings: Settings, plugin: ChannelPlugin) -> ChannelLimits:
    """The concurrency, rate and breaker settings of one channel."""
    limits = plugin.limits(settings)
    return ChannelLimits(
        concurrency=limits.concurrency,
        rate_per_s=limits.rate_per_s,
        breaker_failures=settings.breaker_failures,
        breaker_open_s=settings.breaker_open_s,
    )
