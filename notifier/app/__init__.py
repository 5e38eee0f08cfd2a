"""Composition root: the only place that builds things and wires them together.

Channels, their limits, render checks, partner routes and alert sinks are built from
the channel plug-ins and the settings (``app.channels``), the rules and the signed
links from the settings and templates (``app.messages``); ``build_service`` assembles
them into a
:class:`~notifier.service.Service` (which is what runs, starts and stops), and
``create_app`` puts the HTTP API in front of it. Nothing here connects or starts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from fastapi import APIRouter, FastAPI

from notifier.api.feed import build_feed_router
from notifier.api.feed_stream import FeedStreams
from notifier.api.http import new_app
from notifier.api.optout_pages import build_optout_router
from notifier.api.receipts import build_receipts_router
from notifier.api.routes import build_ops_router, build_router
from notifier.api.rules import build_rules_router
from notifier.api.track import build_track_router
from notifier.app.channels import (
    alert_sinks,
    build_channels,
    channel_limits,
    partner_routes,
    render_checks,
    sender_pickers,
)
from notifier.app.messages import file_rules, optout_links, rules_parser, track_links
from notifier.channels.base import ChannelPlugin
from notifier.channels.registry import registered, specs, template_parts
from notifier.config import Settings
from notifier.contracts.channels import channel_names
from notifier.contracts.limits import EventLimits
from notifier.contracts.stores import load_stores
from notifier.core.pipeline import Pipeline
from notifier.core.quiet_hours import QuietHours, QuietWindow
from notifier.delivery.alerts import (
    AlertSettings,
    DeliveryAlerter,
)
from notifier.delivery.dispatcher import (
    ChannelWorker,
    Dispatcher,
    DispatchSettings,
)
from notifier.delivery.feed import Announcer, FeedDelivery
from notifier.delivery.outbox import Outbox
from notifier.delivery.retry import RetryPolicy
from notifier.ingest.consumer import ConsumerSettings, IngestConsumer
from notifier.ingest.deadletter_store import DeadLetterStore
from notifier.ingest.health import IngestHealth
from notifier.ingest.live_rules import LiveRules
from notifier.ingest.processor import BatchProcessor
from notifier.ingest.timer_poller import TimerPoller
from notifier.ingest.transit_learner import TransitLearner
from notifier.metrics import Metrics
from notifier.rendering.templates import TemplateRenderer
from notifier.service import Service
from notifier.store.db import create_engine
from notifier.workers import WorkerPool

log = logging.getLogger("notifier")


def build_service(settings: Settings, *, plugins: Sequence[ChannelPlugin] | None = None) -> Service:
    """Build every component from settings. Nothing connects until ``start``.

    ``plugins`` are the channels to run, the registered ones unless given."""
    metrics = Metrics()
    plugins = registered() if plugins is None else tuple(plugins)
    renderer = TemplateRenderer(
        settings.templates_dir, template_parts(plugins), default_locale=settings.default_locale
    )
    parse = rules_parser(settings, renderer, plugins)
    rules_file = file_rules(settings, parse)
    stores = load_stores(settings.stores_file)
    engine = create_engine(settings.database_url)
    feed = FeedDelivery(engine, Announcer(settings.nats_url, settings.nats_creds_file))
    channels = build_channels(settings, plugins, feed=feed)
    # on, with their provider (a null channel's provider sends no receipts)
    live = [p for p in plugins if p.name in channels and p.name not in settings.null_channel_names]
    metrics.providers.update({name: adapter.provider for name, adapter in channels.items()})
    outbox = Outbox(engine)
    policy = RetryPolicy(
        max_attempts=settings.dispatch_max_attempts,
        base_s=settings.dispatch_backoff_base_s,
        max_s=settings.dispatch_backoff_max_s,
    )
    dispatch = DispatchSettings(
        batch_size=settings.dispatch_batch_size,
        lease_s=settings.dispatch_lease_s,
        receipt_channels=frozenset(p.name for p in live if p.takes_receipts(settings)),
        dead_recipient_channels=frozenset(p.name for p in plugins if p.remembers_dead_recipients),
    )
    dispatcher = Dispatcher(
        {
            p.name: ChannelWorker(
                engine,
                channels[p.name],
                policy=policy,
                limits=channel_limits(settings, p),
                settings=dispatch,
                metrics=metrics,
                on_requeued=outbox.wake,
            )
            for p in plugins
            if p.name in channels
        }
    )
    pipeline = Pipeline(
        rules_file.rules,
        renderer,
        frozenset(channels),
        specs(plugins),
        webhooks=partner_routes(plugins, channels),
        checks=render_checks(settings, plugins),
        links=track_links(settings),
        stores=stores,
        senders=sender_pickers(settings, plugins),
        optout_links=optout_links(settings),
        ops_email=settings.ops_email,
        quiet=QuietHours(QuietWindow.parse(settings.quiet_hours)),
    )
    dead_letter_store = DeadLetterStore(engine, metrics)
    limits = EventLimits(
        max_bytes=settings.event_max_bytes,
        max_depth=settings.event_max_depth,
        max_string=settings.event_max_string,
        max_clock_skew_s=settings.event_max_clock_skew_s,
    )
    processor = BatchProcessor(
        engine,
        pipeline,
        dead_letter_store.store,
        metrics,
        on_committed=outbox.wake,
        limits=limits,
    )
    consumer = IngestConsumer(
        processor,
        ConsumerSettings(
            durable=settings.ingest_consumer,
            batch_size=settings.ingest_batch_size,
            batch_wait_s=settings.ingest_batch_wait_s,
            ack_wait_s=settings.ingest_ack_wait_s,
            max_deliver=settings.ingest_max_deliver,
            batch_attempts=settings.ingest_batch_attempts,
        ),
    )
    alerter = DeliveryAlerter(
        engine,
        metrics,
        AlertSettings(
            threshold=settings.alert_delivery_rate,
            window_s=settings.alert_window_s,
            min_samples=settings.alert_min_samples,
            interval_s=settings.alert_check_interval_s,
        ),
        alert_sinks(settings, plugins, channels),
        providers=metrics.providers,
    )
    health = IngestHealth(settings.ingest_consumer, settings.ingest_stall_s, metrics)
    live_rules = LiveRules(
        engine, parse, rules_file, processor.use_rules, metrics, poll_s=settings.rules_poll_s
    )
    return Service(
        settings,
        engine,
        consumer,
        dispatcher,
        outbox,
        alerter,
        metrics,
        dead_letter_store,
        health,
        workers=WorkerPool(settings, metrics) if settings.dispatch_workers else None,
        stores=stores,
        timers=TimerPoller(
            engine,
            lambda: processor.pipeline,
            metrics,
            settings.timer_poll_s,
            on_committed=outbox.wake,
        ),
        learner=TransitLearner(
            engine,
            lambda: processor.pipeline,
            settings.prediction_refresh_s,
            timedelta(days=settings.prediction_window_days),
            settings.prediction_min_sample,
        ),
        rules=live_rules,
    )


def create_app(service: Service, *, extra_routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The HTTP app. The caller starts and stops the service around it (see ``serve``),
    so a start-up failure is reported before the HTTP port opens. A dispatch process
    (``NOTIFIER_ROLE=dispatch``) serves only ``/healthz``, ``/readyz`` and ``/metrics``."""
    app = new_app(version="0.1.0")
    if not service.settings.ingests:
        # a dispatch process: the API, receipts included, is the ingest process's
        app.include_router(
            build_ops_router(
                service.metrics, service.readiness, before_scrape=service.refresh_gauges
            )
        )
        return app
    app.state.engine = service.engine
    app.state.delete_dead_letter = service.dead_letter_store.delete
    token = service.settings.api_token
    if token is None and service.settings.environment == "production":
        log.warning("NOTIFIER_API_TOKEN is not set: the /v1 API answers anyone who can reach it")
    app.include_router(
        build_router(
            service.metrics,
            service.readiness,
            # every channel a notification can have, configured or not
            channels=channel_names(),
            api_token=token.get_secret_value() if token else None,
            before_scrape=service.refresh_gauges,
            providers=service.metrics.providers,
            extra=[build_rules_router(service.rules)] if service.rules is not None else [],
        )
    )
    secret = service.settings.feed_secret
    streams = FeedStreams(
        service.engine,
        lambda: service.nc,
        keepalive_s=service.settings.feed_keepalive_s,
        queue_size=service.settings.feed_stream_queue,
    )
    app.state.feed_streams = streams
    app.include_router(
        build_feed_router(
            streams,
            api_token=token.get_secret_value() if token else None,
            feed_secret=secret.get_secret_value() if secret else None,
        )
    )
    auth = service.settings.twilio_auth_token
    twilio = next(
        (
            name
            for name, worker in service.dispatcher.workers.items()
            if worker.adapter.provider == "twilio"
        ),
        None,
    )
    app.include_router(
        build_receipts_router(
            service.engine,
            service.metrics,
            twilio_channel=twilio,
            twilio_auth_token=auth.get_secret_value() if auth and twilio else None,
            public_base_url=service.settings.public_base_url,
            on_requeued=service.outbox.wake,
        )
    )
    track_secret = service.settings.track_secret
    app.include_router(
        build_track_router(
            service.engine,
            track_secret.get_secret_value() if track_secret else None,
            store_for=service.stores.view_of if service.stores else None,
        )
    )
    app.include_router(
        build_optout_router(
            service.engine, track_secret.get_secret_value() if track_secret else None
        )
    )
    for router in extra_routers:
        app.include_router(router)
    return app
