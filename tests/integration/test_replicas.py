"""Two replicas on one PostgreSQL share the consumer: no order corrupted, nothing sent twice."""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest

from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from tests.integration.helpers import event, order, publish, running, settings_for, stale_rows
from tests.support import wait_until

ORDERS = 60
STEPS = ["placed", "confirmed", "shipped", "out_for_delivery", "delivered"]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_replicas_share_the_work_without_corrupting_an_order(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = settings_for(
        nats.url, database_url, mail.port, ingest_batch_size=7, dispatch_batch_size=5
    )
    async with contextlib.AsyncExitStack() as stack:
        first, client = await stack.enter_async_context(running(settings))
        second, _ = await stack.enter_async_context(running(settings))
        # every step of every order, so both replicas get batches touching the same orders
        await publish(
            nats.url, *[event(f"R-{i}", s, n) for n, s in enumerate(STEPS) for i in range(ORDERS)]
        )
        # an order's steps may arrive together: those a later step makes stale are
        # suppressed, not sent (test_timing.py); every message is one or the other
        emailed = ("order_confirmed", "shipped", "out_for_delivery", "delivered")

        async def accounted() -> int:
            stale = await stale_rows(database_url)
            return len({(o, t) for o, c, t, _s in stale if c == "email" and t in emailed})

        async def all_out() -> bool:
            return len(mail.messages()) + await accounted() >= ORDERS * 4

        await wait_until(all_out, timeout=60, interval=0.5)
        stale_count = await accounted()
        both_ingested = [
            s.metrics.registry.get_sample_value("notifier_events_total", {"outcome": "new"}) or 0
            for s in (first, second)
        ]
        for i in range(ORDERS):
            view = await order(client, f"R-{i}")
            assert view is not None
            assert view["state"] == "delivered"
            assert [e["outcome"] for e in view["events"]] == ["applied"] * 5
    assert all(n > 0 for n in both_ingested), f"one replica did all the work: {both_ingested}"
    assert sum(both_ingested) == ORDERS * len(STEPS)
    counts = Counter(m.message_id for m in mail.messages())
    assert len(counts) == ORDERS * 4 - stale_count
    assert max(counts.values()) == 1
