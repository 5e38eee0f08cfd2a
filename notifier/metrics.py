"""Prometheus metrics, on a registry owned by the app (no module-level collectors)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    """Every metric the service exports at ``/metrics``."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    #: channel → provider, for labels (set by the composition root)
    providers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = self.registry
        self.events = Counter(
            "notifier_events_total",
            "Events by what the pipeline made of them",
            ["outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "notifier_dead_letters_total",
            "Events dead-lettered, by reason",
            ["reason"],
            registry=r,
        )
        self.deadletter_publish_failures = Counter(
            "notifier_deadletter_publish_failures_total",
            "Dead letters the DEADLETTER stream did not acknowledge (their events stay "
            "unacked and are retried)",
            registry=r,
        )
        self.ingest_given_back = Counter(
            "notifier_ingest_batches_given_back_total",
            "Batches that kept failing for a reason other than a database outage, handed "
            "back to JetStream after NOTIFIER_INGEST_BATCH_ATTEMPTS attempts",
            registry=r,
        )
        self.notifications = Counter(
            "notifier_notifications_total",
            "Ledger transitions, by channel, provider, template and status",
            ["channel", "provider", "template", "status"],
            registry=r,
        )
        self.receipts = Counter(
            "notifier_receipts_total",
            "Delivery receipts, by channel and what they said",
            ["channel", "status"],
            registry=r,
        )
        self.breaker_open = Gauge(
            "notifier_circuit_open",
            "1 while a provider's circuit breaker is open",
            ["channel", "key"],
            registry=r,
        )
        self.delivery_rate = Gauge(
            "notifier_delivery_rate",
            "Share of finished notifications that got through, over the alert window",
            ["channel"],
            registry=r,
        )
        self.alerts = Counter(
            "notifier_ops_alerts_total",
            "Operations alerts raised",
            ["kind"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "notifier_ingest_batch_seconds",
            "Time to apply one ingest batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.batch_size = Histogram(
            "notifier_ingest_batch_size",
            "Messages per ingest batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 5000),
            registry=r,
        )
        self.send_seconds = Histogram(
            "notifier_send_seconds",
            "Time for a provider to accept one message",
            ["channel"],
            registry=r,
        )
        self.event_to_send_seconds = Histogram(
            "notifier_event_to_send_seconds",
            "From ledger entry to provider acceptance",
            ["channel"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.render_failures = Counter(
            "notifier_render_failures_total",
            "Notifications that failed as they were rendered (template error or output the "
            "channel cannot carry): nobody is told",
            ["channel", "template"],
            registry=r,
        )
        self.ingest_lag = Gauge(
            "notifier_ingest_lag",
            "Events the ingest consumer has not acknowledged yet "
            "(JetStream num_pending + num_ack_pending)",
            registry=r,
        )
        self.ingest_oldest_unacked_seconds = Gauge(
            "notifier_ingest_oldest_unacked_seconds",
            "Age of the oldest event the ingest consumer has not acknowledged (0 when none)",
            registry=r,
        )
        self.ingest_stalled = Gauge(
            "notifier_ingest_stalled",
            "1 while events wait and ingest has not advanced for NOTIFIER_INGEST_STALL_S",
            registry=r,
        )
        self.queue_depth = Gauge(
            "notifier_queued_notifications",
            "Notifications waiting to be sent",
            ["channel"],
            registry=r,
        )
        self.rules_version = Gauge(
            "notifier_rules_version",
            "The rules version in effect in this process (0: the rules file)",
            registry=r,
        )
        self.rules_refused_version = Gauge(
            "notifier_rules_refused_version",
            "The newest stored rules version while it is refused here (it does not "
            "validate: a template or channel it names is missing); 0 when none is",
            registry=r,
        )

        self.dispatch_workers = Gauge(
            "notifier_dispatch_workers_running",
            "Dispatch worker processes running under this one (NOTIFIER_DISPATCH_WORKERS)",
            registry=r,
        )
        self.dispatch_worker_restarts = Counter(
            "notifier_dispatch_worker_restarts_total",
            "Dispatch worker processes that exited unasked and were started again",
            registry=r,
        )

    def count(self, channel: str, template: str, status: str, provider: str | None = None) -> None:
        """Tally one ledger transition."""
        who = provider or self.providers.get(channel, "none")
        self.notifications.labels(channel, who, template, status).inc()
