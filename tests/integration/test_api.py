"""The HTTP API in-process (httpx on the ASGI app): health, readiness, metrics, the order
view, the bearer token, and erasing one customer's personal data. Real NATS, real SMTP
(aiosmtpd), SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from httpx import AsyncClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.store.tables import events, notifications
from tests.integration.helpers import (
    event,
    order,
    publish,
    publish_apart,
    running,
    settings_for,
    statuses,
)
from tests.support import free_port, wait_until

LIFECYCLE = ["placed", "confirmed", "shipped", "out_for_delivery", "delivered"]
PHONE = "+14155550123"
EMAIL = "grace.hopper@example.com"


def _customer(order_id: str, *, email: str = EMAIL) -> dict[str, Any]:
    return {
        "id": f"cust-{order_id}",
        "name": "Grace Hopper",
        "email": email,
        "phone": PHONE,
        "locale": "en-GB",
        "timezone": "Europe/London",
    }


async def _metrics(client: AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample at /metrics, keyed by (sample name, sorted labels)."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _sample(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float | None:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    found = [
        value
        for (n, series), value in samples.items()
        if n == name and set(labels.items()) <= set(series)
    ]
    return sum(found) if found else None


async def _settled(client: AsyncClient, order_id: str, count: int | None = None) -> dict[str, Any]:
    """The order view once every notification left queued/sending (and ``count`` exist)."""
    seen: dict[str, Any] = {}

    async def done() -> bool:
        view = await order(client, order_id)
        if view is None:
            return False
        seen["view"] = view
        if count is not None and len(view["notifications"]) < count:
            return False
        return all(n["status"] not in ("queued", "sending") for n in view["notifications"])

    await wait_until(done, timeout=15)
    result: dict[str, Any] = seen["view"]
    return result


async def test_healthz_and_readyz(nats: NatsServer, mail: MailCatcher, database_url: str) -> None:
    async with running(settings_for(nats.url, database_url, mail.port)) as (_service, client):
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ok",
            "checks": {
                "nats": "ok",
                "database": "ok",
                "dead_letters": "ok",
                "rules": "ok",
                "ingest": "ok",
            },
        }


async def test_readyz_names_nats_while_it_is_down(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    async with running(settings_for(nats.url, database_url, mail.port)) as (_service, client):
        nats.stop()
        try:

            async def unready() -> bool:
                return (await client.get("/readyz")).status_code == 503

            await wait_until(unready, timeout=10)
            body = (await client.get("/readyz")).json()
            assert body["status"] == "unavailable"
            assert body["checks"]["database"] == "ok"
            assert body["checks"]["nats"] != "ok"
            # alive, even though not ready
            assert (await client.get("/healthz")).status_code == 200
        finally:
            nats.start()

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await wait_until(ready, timeout=15)


async def test_metrics_count_events_and_sent_emails(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    async with running(settings_for(nats.url, database_url, mail.port)) as (_service, client):
        before = await _metrics(client)
        assert _sample(before, "notifier_events_total", outcome="new") in (None, 0.0)
        await publish_apart(
            nats.url, client, *[event("M-1", s, i) for i, s in enumerate(LIFECYCLE)]
        )
        await mail.wait_for(4, timeout=15)
        view = await _settled(client, "M-1")
        assert statuses(view) == {
            "order_confirmed": "sent",
            "shipped": "sent",
            "out_for_delivery": "sent",
            "delivered": "sent",
        }

        async def all_sent_counted() -> bool:
            samples = await _metrics(client)
            sent = _sample(samples, "notifier_notifications_total", channel="email", status="sent")
            return sent is not None and sent >= 4

        await wait_until(all_sent_counted, timeout=10)
        samples = await _metrics(client)
        assert _sample(samples, "notifier_events_total", outcome="new") == len(LIFECYCLE)
        assert (
            _sample(samples, "notifier_notifications_total", channel="email", status="sent")
            == len(mail.messages())
            == 4
        )
        # every email was first queued by the pipeline; none failed or was retried
        assert (
            _sample(samples, "notifier_notifications_total", channel="email", status="queued") == 4
        )
        assert _sample(
            samples, "notifier_notifications_total", channel="email", status="failed"
        ) in (None, 0.0)
        assert _sample(
            samples, "notifier_notifications_total", channel="email", status="retry"
        ) in (None, 0.0)
        assert _sample(samples, "notifier_events_total", outcome="duplicate") in (None, 0.0)

        # a duplicate (same id and content, past JetStream's own dedup) is counted as such
        await publish(nats.url, event("M-1", "placed", 0), msg_ids=["again"])

        async def duplicate_counted() -> bool:
            samples = await _metrics(client)
            return _sample(samples, "notifier_events_total", outcome="duplicate") == 1.0

        await wait_until(duplicate_counted, timeout=10)
        samples = await _metrics(client)
        assert _sample(samples, "notifier_events_total", outcome="new") == len(LIFECYCLE)
        assert len(mail.messages()) == 4


async def test_unknown_order_is_a_readable_404(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    async with running(settings_for(nats.url, database_url, mail.port)) as (_service, client):
        response = await client.get("/v1/orders/NOPE-404")
        assert response.status_code == 404
        detail = response.json()["detail"]
        assert isinstance(detail, str)
        assert "NOPE-404" in detail
        assert "not found" in detail


async def test_order_view_never_shows_contacts(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    async with running(settings_for(nats.url, database_url, mail.port)) as (_service, client):
        await publish_apart(
            nats.url,
            client,
            *[event("V-1", s, i, customer=_customer("V-1")) for i, s in enumerate(LIFECYCLE)],
        )
        got = await mail.wait_for(4, timeout=15)
        assert all(m.rcpt_tos == [EMAIL] for m in got)
        view = await _settled(client, "V-1")
        # the view is not empty: it has the history and the ledger (sms/push suppressed too)
        assert len(view["events"]) == len(LIFECYCLE)
        channels = {n["channel"] for n in view["notifications"]}
        assert "email" in channels
        assert "sms" in channels  # the phone made sms notifications exist (suppressed)
        serialized = json.dumps(view)
        for contact in (EMAIL, PHONE, PHONE.lstrip("+"), "grace.hopper", "@example.com"):
            assert contact not in serialized, f"{contact!r} leaked into the order view"
        raw = (await client.get("/v1/orders/V-1")).text
        assert EMAIL not in raw
        assert PHONE not in raw


async def test_api_token_guards_v1_but_not_health(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, mail.port, api_token="s3cret")
    async with running(settings) as (_service, client):
        await publish(nats.url, event("T-1", "placed", 0))
        await mail.wait_for(1, timeout=15)
        good = {"Authorization": "Bearer s3cret"}

        async def visible() -> bool:
            return (await client.get("/v1/orders/T-1", headers=good)).status_code == 200

        await wait_until(visible, timeout=15)
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "s3cret"},
            {"Authorization": "Bearer s3cret2"},
            {"Authorization": "Basic s3cret"},
        ):
            response = await client.get("/v1/orders/T-1", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers.get("www-authenticate") == "Bearer"
            assert "T-1" not in response.text
            erase = await client.delete("/v1/customers/cust-T-1/personal-data", headers=headers)
            assert erase.status_code == 401, headers
        ok = await client.get("/v1/orders/T-1", headers=good)
        assert ok.status_code == 200
        assert ok.json()["order_id"] == "T-1"
        assert (await client.get("/v1/orders/NOPE", headers=good)).status_code == 404
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200


async def test_erasing_a_customer_scrubs_payloads_and_ledger_and_suppresses_the_queue(
    nats: NatsServer, database_url: str
) -> None:
    # SMTP on a closed port: every email stays queued; a long backoff keeps each one
    # sitting in `queued` (not mid-send) after its first failed attempt.
    settings = settings_for(
        nats.url,
        database_url,
        free_port(),
        smtp_timeout_s=1.0,
        dispatch_backoff_base_s=120.0,
        dispatch_backoff_max_s=120.0,
    )
    async with running(settings) as (service, client):
        await publish(
            nats.url,
            event("E-1", "placed", 0, customer=_customer("E-1")),
            event("E-1", "shipped", 1, customer=_customer("E-1")),
            event("K-1", "placed", 0, customer=_customer("K-1", email="keep@example.com")),
        )

        async def attempted(order_id: str, n: int) -> bool:
            view = await order(client, order_id)
            if view is None:
                return False
            emails = [x for x in view["notifications"] if x["channel"] == "email"]
            # the first one was tried; later ones for the order wait behind it (FIFO)
            return (
                len(emails) == n
                and all(x["status"] == "queued" for x in emails)
                and (emails[0]["attempts"] >= 1)
            )

        await wait_until(lambda: attempted("E-1", 2), timeout=15)
        await wait_until(lambda: attempted("K-1", 1), timeout=15)

        response = await client.delete("/v1/customers/cust-E-1/personal-data")
        assert response.status_code == 200
        body = response.json()
        assert body["customer_id"] == "cust-E-1"
        assert body["events"] == 2
        view = await order(client, "E-1")
        assert view is not None
        assert body["notifications"] == len(view["notifications"])

        assert statuses(view) == {"order_confirmed": "suppressed", "shipped": "suppressed"}
        assert {n["last_error"] for n in view["notifications"] if n["channel"] == "email"} == {
            "customer erased"
        }
        # the history still adds up
        assert view["state"] == "shipped"
        assert [e["outcome"] for e in view["events"]] == ["applied", "applied"]

        async with service.engine.connect() as conn:
            erased = (
                (
                    await conn.execute(
                        select(events.c.payload).where(events.c.customer_id == "cust-E-1")
                    )
                )
                .scalars()
                .all()
            )
            kept = (
                (
                    await conn.execute(
                        select(events.c.payload).where(events.c.customer_id == "cust-K-1")
                    )
                )
                .scalars()
                .all()
            )
            ledger = (
                await conn.execute(
                    select(
                        notifications.c.customer_id,
                        notifications.c.recipient,
                        notifications.c.subject,
                        notifications.c.body_text,
                        notifications.c.body_html,
                        notifications.c.status,
                        notifications.c.channel,
                    )
                )
            ).all()
        assert len(erased) == 2
        for payload in erased:
            assert EMAIL not in payload
            assert "Grace Hopper" not in payload
            assert PHONE not in payload
            customer = json.loads(payload)["customer"]
            assert customer["id"] == "cust-E-1"
            assert customer.get("email") is None
            assert customer.get("name") is None
            assert customer.get("phone") is None
            assert json.loads(payload)["attributes"] == {}
        erased_rows = [r for r in ledger if r.customer_id == "cust-E-1"]
        kept_rows = [r for r in ledger if r.customer_id == "cust-K-1"]
        assert erased_rows and kept_rows
        for r in erased_rows:
            assert (r.recipient, r.subject, r.body_text, r.body_html) == (None, None, None, None)
            # in-app items are written at once (no provider to wait for): those sent keep
            # their fate, and their feed items are deleted with the customer
            assert r.status == "suppressed" or (r.channel == "inapp" and r.status == "sent")
        sent_in_app = sum(r.status == "sent" for r in erased_rows)
        assert body["feed_items"] == sent_in_app
        # another customer's data is untouched
        assert len(kept) == 1 and "keep@example.com" in kept[0] and "Grace Hopper" in kept[0]
        kept_email = next(r for r in kept_rows if r.recipient == "keep@example.com")
        assert kept_email.status == "queued"
        assert kept_email.body_text

        # erasing again is harmless and reports the same rows
        again = await client.delete("/v1/customers/cust-E-1/personal-data")
        assert again.status_code == 200
        assert again.json()["events"] == 2


async def test_erasing_an_unknown_customer_touches_nothing(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    async with running(settings_for(nats.url, database_url, mail.port)) as (_service, client):
        response = await client.delete("/v1/customers/nobody/personal-data")
        assert response.status_code == 200
        assert response.json() == {
            "customer_id": "nobody",
            "events": 0,
            "notifications": 0,
            "dead_letters": 0,
            "feed_items": 0,
            "preferences": 0,
        }


async def test_erasing_while_a_send_is_in_flight_still_suppresses_it(
    nats: NatsServer, database_url: str
) -> None:
    # An SMTP server that accepts and never greets: each send stays `sending` until the
    # SMTP timeout, then fails transiently.
    stalled: list[asyncio.StreamWriter] = []

    async def stall(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stalled.append(writer)

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = settings_for(nats.url, database_url, port, smtp_timeout_s=2.0)
    try:
        async with running(settings) as (_service, client):
            await publish(nats.url, event("W-1", "placed", 0))

            async def sending() -> bool:
                return statuses(await order(client, "W-1")).get("order_confirmed") == "sending"

            await wait_until(sending, timeout=15)
            response = await client.delete("/v1/customers/cust-W-1/personal-data")
            assert response.status_code == 200
            view = await _settled(client, "W-1")
            email = next(n for n in view["notifications"] if n["channel"] == "email")
            assert (email["status"], email["last_error"]) == ("suppressed", "customer erased")
    finally:
        server.close()
        for writer in stalled:
            writer.close()


async def test_metrics_show_the_queue_depth_per_channel(
    nats: NatsServer, database_url: str
) -> None:
    # SMTP on a closed port: the confirmation and what waits behind it stay in the queue
    settings = settings_for(
        nats.url,
        database_url,
        free_port(),
        smtp_timeout_s=1.0,
        dispatch_backoff_base_s=120.0,
        dispatch_backoff_max_s=120.0,
    )
    async with running(settings) as (_service, client):
        await publish(nats.url, event("QD-1", "placed", 0), event("QD-1", "shipped", 1))

        async def both_in_ledger() -> bool:
            view = await order(client, "QD-1")
            return (
                view is not None
                and len([n for n in view["notifications"] if n["channel"] == "email"]) == 2
            )

        # the two events may arrive in separate batches: wait for both ledger rows
        await wait_until(both_in_ledger, timeout=15)
        samples = await _metrics(client)
        assert _sample(samples, "notifier_queued_notifications", channel="email") == 2
