"""A copy of an event re-sent by its source never moves the event's place, on a real
database and through a real nats-server: the confirmation of an order whose first
``placed`` was held back by a crash is sent, once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import nats as nats_client
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.channels.registry import registered, specs, template_parts
from notifier.config import DEFAULT_RULES_FILE, default_templates_dir
from notifier.core.model import DeadLetter, NotificationStatus, RawMessage
from notifier.core.pipeline import Pipeline
from notifier.core.rules import load_rules
from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.ingest.consumer import ConsumerSettings, consumer_config
from notifier.ingest.processor import BatchProcessor
from notifier.metrics import Metrics
from notifier.rendering.templates import TemplateRenderer
from notifier.store.db import create_engine
from notifier.store.migrate import upgrade
from notifier.store.tables import events, notifications
from notifier.streams import ORDERS_STREAM
from tests.integration.helpers import event, order, publish, running, settings_for, statuses
from tests.support import wait_until

N = notifications.c


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


def _processor(engine: AsyncEngine, dead: list[DeadLetter]) -> BatchProcessor:
    plugins = registered()
    renderer = TemplateRenderer(default_templates_dir(), template_parts(plugins))
    rules = load_rules(DEFAULT_RULES_FILE, template_exists=renderer.has)

    async def sink(letters: Sequence[DeadLetter]) -> int:
        dead.extend(letters)
        return len(letters)

    pipeline = Pipeline(rules, renderer, frozenset({"email"}), specs(plugins))
    return BatchProcessor(engine, pipeline, sink, Metrics())


def _at(body: dict[str, Any], seq: int) -> RawMessage:
    return RawMessage(json.dumps(body).encode(), {}, "orders.state.web", seq)


async def _confirmations(engine: AsyncEngine, order_id: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(N.status).where(
                N.order_id == order_id, N.channel == "email", N.template == "order_confirmed"
            )
        )
        return [r.status for r in rows]


async def _ledger_size(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(notifications))).scalar_one()
        )


async def test_the_first_copy_coming_last_takes_its_place_in_the_store(
    engine: AsyncEngine,
) -> None:
    dead: list[DeadLetter] = []
    processor = _processor(engine, dead)
    placed, shipped = event("E-1", "placed", 0), event("E-1", "shipped", 5)
    # the crash held back `placed` (seq 1); `shipped` (2) and the source's copy (3) went on
    first = await processor.process([_at(shipped, 2), _at(placed, 3)])
    assert first.counts == {"new": 2, "stale": 1}
    assert await _confirmations(engine, "E-1") == []

    late = await processor.process([_at(placed, 1)])
    assert late.counts == {"moved": 1}
    assert await _confirmations(engine, "E-1") == [NotificationStatus.QUEUED.value]
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(events.c.seq, events.c.outcome).where(
                    events.c.event_id == placed["event_id"]
                )
            )
        ).one()
    assert (row.seq, row.outcome) == (1, "applied")

    async with engine.begin() as conn:
        await conn.execute(update(notifications).values(status=NotificationStatus.SENT.value))
    size = await _ledger_size(engine)
    for seq in (1, 3, 2):  # every copy again, and `shipped` again: nothing new
        again = await processor.process([_at(shipped if seq == 2 else placed, seq)])
        assert again.counts == {"duplicate": 1}
    assert await _ledger_size(engine) == size
    assert await _confirmations(engine, "E-1") == [NotificationStatus.SENT.value]
    assert dead == []


async def test_a_first_copy_redelivered_after_ack_wait_still_confirms_the_order_once(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    """As in a run with SIGKILLs: the killed process held `placed`; JetStream hands out
    `shipped` and the copy of `placed` its source re-sent (a new ``Nats-Msg-Id``)
    first, and `placed` itself only after ``ack_wait``."""
    placed, shipped = event("K-1", "placed", 0), event("K-1", "shipped", 5)
    await publish(
        nats.url,
        placed,
        shipped,
        placed,
        msg_ids=["K-1-placed", "K-1-shipped", "K-1-placed.resent"],
    )
    settings = settings_for(nats.url, database_url, mail.port, ingest_ack_wait_s=2)
    nc = await nats_client.connect(nats.url)
    try:
        js = nc.jetstream()
        await js.add_consumer(
            ORDERS_STREAM,
            consumer_config(
                ConsumerSettings(
                    durable=settings.ingest_consumer,
                    batch_size=settings.ingest_batch_size,
                    batch_wait_s=settings.ingest_batch_wait_s,
                    ack_wait_s=settings.ingest_ack_wait_s,
                    max_deliver=settings.ingest_max_deliver,
                )
            ),
        )
        sub = await js.pull_subscribe_bind(durable=settings.ingest_consumer, stream=ORDERS_STREAM)
        (held,) = await sub.fetch(1, timeout=5)
        assert held.metadata.sequence.stream == 1  # taken, never acked: the process died
    finally:
        await nc.close()

    async with running(settings) as (_service, client):
        await wait_until(lambda: _all_acked(nats.url, settings.ingest_consumer, 3), timeout=20)
        await wait_until(lambda: _settled(client, "K-1"), timeout=15)
        subjects = [m.subject for m in mail.messages()]
        assert subjects == ["Your order K-1 has shipped", "Your order K-1 is confirmed"]
        view = await order(client, "K-1")
        assert view is not None
        assert statuses(view) == {"shipped": "sent", "order_confirmed": "sent"}
        assert [(e["seq"], e["state"], e["outcome"]) for e in view["events"]] == [
            (1, "placed", "applied"),
            (2, "shipped", "applied"),
        ]


async def _all_acked(url: str, durable: str, last_seq: int) -> bool:
    nc = await nats_client.connect(url)
    try:
        info = await nc.jetstream().consumer_info(ORDERS_STREAM, durable)
    finally:
        await nc.close()
    return (info.ack_floor.stream_seq or 0) >= last_seq and not info.num_ack_pending


async def _settled(client: Any, order_id: str) -> bool:
    view = await order(client, order_id)
    return (
        view is not None
        and bool(view["notifications"])
        and all(n["status"] not in ("queued", "sending") for n in view["notifications"])
    )
