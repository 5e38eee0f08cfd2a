"""The JetStream streams notifier needs, their subjects and the headers a dead letter
carries: the names both ingest and delivery (and the dev tools, the benchmark and the
AsyncAPI document) use, so none of them imports another for a constant. The streams
are created or updated idempotently at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

ORDERS_STREAM = "ORDERS"
ORDERS_SUBJECTS = ["orders.>"]
EVENTS_FILTER = "orders.state.>"
DEADLETTER_STREAM = "DEADLETTER"
DEADLETTER_PREFIX = "deadletter.orders"
#: the per-channel dispatch work queues: ``notify.<channel>``, one consumer each
NOTIFY_STREAM = "NOTIFY"
NOTIFY_PREFIX = "notify"
NOTIFY_DEADLETTER_PREFIX = "deadletter.notify"

#: headers of a dead letter (refused events and given-up notifications alike)
REASON = "Notifier-Reason"
DETAIL = "Notifier-Detail"
ORIGINAL_SUBJECT = "Notifier-Original-Subject"
ORIGINAL_SEQ = "Notifier-Original-Seq"


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """What an operator may tune about the streams."""

    duplicate_window_s: float = 120.0
    max_age_days: float = 7.0
    deadletter_max_age_days: float = 30.0


def orders_stream(s: StreamSettings) -> StreamConfig:
    """Order events: file storage, deduplicated by ``Nats-Msg-Id`` within the window."""
    return StreamConfig(
        name=ORDERS_STREAM,
        subjects=ORDERS_SUBJECTS,
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        duplicate_window=s.duplicate_window_s,
        max_age=s.max_age_days * 86400,
        discard=DiscardPolicy.OLD,
    )


def deadletter_stream(s: StreamSettings) -> StreamConfig:
    """Refused events with their reason; kept for inspection, bounded by age."""
    return StreamConfig(
        name=DEADLETTER_STREAM,
        subjects=[f"{DEADLETTER_PREFIX}.>", f"{NOTIFY_DEADLETTER_PREFIX}.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        duplicate_window=s.duplicate_window_s,
        max_age=s.deadletter_max_age_days * 86400,
    )


def notify_stream(s: StreamSettings) -> StreamConfig:
    """Dispatch messages ("send notification N now"), one subject per channel; a work
    queue, so a message is gone once its channel's consumer acks it."""
    return StreamConfig(
        name=NOTIFY_STREAM,
        subjects=[f"{NOTIFY_PREFIX}.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.WORK_QUEUE,
        duplicate_window=s.duplicate_window_s,
    )


async def ensure_streams(js: JetStreamContext, s: StreamSettings) -> None:
    """Create each stream, or bring an existing one to this configuration."""
    for config in (orders_stream(s), deadletter_stream(s), notify_stream(s)):
        try:
            await js.stream_info(config.name or "")
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)
