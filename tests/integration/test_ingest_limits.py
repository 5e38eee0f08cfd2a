"""No input stalls ingest, and no bad optional value costs the customer their message:
real nats-server, real SMTP (aiosmtpd), SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from typing import Any

import nats
import pytest

from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.ingest.deadletters import StoredDeadLetter, list_dead_letters
from tests.integration.helpers import event, order, publish, running, settings_for, statuses
from tests.support import wait_until


async def _dead_letters(url: str, count: int) -> list[StoredDeadLetter]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()

        async def enough() -> bool:
            return len(await list_dead_letters(js)) >= count

        await wait_until(enough, timeout=15)
        return await list_dead_letters(js)
    finally:
        await nc.close()


async def _sent(client: Any, order_id: str, template: str) -> bool:
    return statuses(await order(client, order_id)).get(template) == "sent"


async def test_a_deeply_nested_event_is_dead_lettered_while_its_neighbours_go_through(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    # ~6 KB: before the limits, json.loads raised RecursionError and the batch of six
    # was retried for ever, holding everything behind it
    deep = json.dumps(event("N-3", "placed", 0))[:-1]
    deep += ', "attributes": {"x": ' + "[" * 1000 + "]" * 1000 + "}}"
    batch: list[dict[str, Any] | bytes] = [
        event("N-1", "placed", 0),
        event("N-2", "placed", 0),
        deep.encode(),
        event("N-4", "placed", 0),
        event("N-5", "placed", 0),
        event("N-6", "placed", 0),
    ]
    # published before the service starts, so its first fetch takes all six at once
    await publish(nats.url, *batch, msg_ids=[f"m{i}" for i in range(6)])
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings) as (_service, client):
        got = await mail.wait_for(5, timeout=15)
        assert sorted(m.subject for m in got) == [
            f"Your order N-{i} is confirmed" for i in (1, 2, 4, 5, 6)
        ]
        letters = await _dead_letters(nats.url, 1)
        assert [(d.reason, d.original_seq) for d in letters] == [("limit_exceeded", 3)]
        assert "levels deep" in letters[0].detail
        assert await order(client, "N-3") is None
        # and what comes after still flows
        await publish(nats.url, event("N-7", "placed", 0))
        await mail.wait_for(6, timeout=15)


async def test_a_far_future_event_is_refused_and_does_not_freeze_the_order(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    bogus = dict(
        event("F-1", "shipped", 1), event_id="F-1-bogus", occurred_at="9999-12-31T23:59:59+00:00"
    )
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings) as (_service, client):
        await publish(nats.url, event("F-1", "placed", 0), bogus, event("F-1", "shipped", 2))
        await wait_until(lambda: _sent(client, "F-1", "shipped"), timeout=15)
        letters = await _dead_letters(nats.url, 1)
        assert [d.reason for d in letters] == ["future_timestamp"]
        assert letters[0].detail.startswith("occurred_at is")
        view = await order(client, "F-1")
        assert view is not None and view["state"] == "shipped"


async def test_a_price_that_is_not_a_number_still_sends_the_confirmation(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    placed = event("M-1", "placed", 0)
    placed["attributes"] = {
        "currency": "EUR",
        "total": "12.00",
        "items": [{"name": "Tea", "quantity": 1, "price": "abc"}],
    }
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings):
        await publish(nats.url, placed)
        [sent] = await mail.wait_for(1, timeout=15)
        assert "Tea (abc)" in (sent.text or "")  # the price as the shop sent it
        assert "€12.00" in (sent.text or "")


async def test_a_name_with_crlf_and_nul_arrives_on_one_line(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    placed = event("C-1", "placed", 0)
    placed["customer"]["name"] = "Eve\r\nBcc: attacker@example.com\x00"
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings):
        await publish(nats.url, placed)
        [sent] = await mail.wait_for(1, timeout=15)
        assert sent.rcpt_tos == ["ada@example.com"]
        # the name was flattened to "Eve Bcc: attacker@example.com" (one line, so no
        # header and no recipient was injected) and is greeted by its first word
        assert "Hi Eve," in (sent.text or "")


async def test_a_notification_that_cannot_be_rendered_is_counted_logged_and_in_the_stats(
    nats: NatsServer, mail: MailCatcher, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="notifier")
    placed = event("R-1", "placed", 0)
    # items that are not objects: the shipped template reads item.get(...) and fails
    placed["attributes"] = {"currency": "EUR", "items": ["tea"]}
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings) as (_service, client):
        await publish(nats.url, placed)

        async def failed() -> bool:
            return statuses(await order(client, "R-1")).get("order_confirmed") == "failed"

        await wait_until(failed, timeout=15)
        view = await order(client, "R-1")
        assert view is not None
        [note] = [n for n in view["notifications"] if n["channel"] == "email"]
        metrics = (await client.get("/metrics")).text
        assert (
            'notifier_render_failures_total{channel="email",template="order_confirmed"} 1.0'
            in metrics
        )
        stats = (await client.get("/v1/stats/delivery")).json()
        assert stats["render_failures"] == {
            "total": 1,
            "by_template": [{"channel": "email", "template": "order_confirmed", "count": 1}],
        }
        logged = [r.getMessage() for r in caplog.records if note["id"] in r.getMessage()]
        assert logged, "the failure is logged by notification id"
        assert all("ada@example.com" not in line and "Ada" not in line for line in logged)
