"""The spine end to end, in-process: real NATS, real SMTP (aiosmtpd), SQLite and PostgreSQL."""

from __future__ import annotations

import json

import nats

from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.ingest.deadletters import list_dead_letters
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


async def test_full_lifecycle_sends_the_right_emails_once(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings) as (_service, client):
        await publish_apart(
            nats.url, client, *[event("A-1", s, i) for i, s in enumerate(LIFECYCLE)]
        )
        got = await mail.wait_for(4, timeout=15)
        await _settled(client, "A-1")
        assert [m.subject for m in mail.messages()] == [
            "Your order A-1 is confirmed",
            "Your order A-1 has shipped",
            "Your order A-1 is out for delivery",
            "Your order A-1 has been delivered",
        ]
        shipped = got[1]
        assert "https://track.example.com/JD0001" in (shipped.text or "")
        assert "https://track.example.com/JD0001" in (shipped.html or "")
        assert shipped.rcpt_tos == ["ada@example.com"]
        assert shipped.message_id.startswith("<n_")
        view = await order(client, "A-1")
        assert view is not None
        assert view["state"] == "delivered"
        assert view["shipments"] == {"p1": "delivered"}
        assert [e["outcome"] for e in view["events"]] == ["applied"] * 5
        assert statuses(view) == {
            "order_confirmed": "sent",
            "shipped": "sent",
            "out_for_delivery": "sent",
            "delivered": "sent",
        }
        # the confirmation fires once, for `placed`, not again for `confirmed`
        assert (
            sum(
                n["template"] == "order_confirmed"
                for n in view["notifications"]
                if n["channel"] == "email"
            )
            == 1
        )


async def test_customer_language_with_fallback(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings):
        await publish(
            nats.url,
            event("F-1", "placed", 0, locale="fr-CA"),
            event("D-1", "placed", 0, locale="de-DE"),
        )
        got = await mail.wait_for(2, timeout=15)
        by_subject = sorted(m.subject for m in got)
        assert by_subject == ["Votre commande F-1 est confirmée", "Your order D-1 is confirmed"]


async def test_duplicates_have_no_effect(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, mail.port)
    placed = event("B-1", "placed", 0)
    async with running(settings) as (_service, client):
        await publish(nats.url, placed)
        await mail.wait_for(1, timeout=15)
        # same id and content, published past JetStream's own dedup (other Nats-Msg-Id)
        await publish(nats.url, placed, placed, msg_ids=["again-1", "again-2"])
        await publish(nats.url, event("B-1", "confirmed", 1))
        await wait_until(lambda: _state(client, "B-1", "confirmed"), timeout=15)
        await _settled(client, "B-1")
        assert len(mail.messages()) == 1
        view = await order(client, "B-1")
        assert view is not None
        assert len(view["events"]) == 2


async def test_revision_that_changes_what_was_told_sends_a_correction(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings) as (_service, client):
        shipped = event("C-1", "shipped", 1)
        await publish(nats.url, event("C-1", "placed", 0), shipped)
        await mail.wait_for(2, timeout=15)
        revised = dict(
            shipped,
            shipment={
                "id": "p1",
                "carrier": "UPS",
                "tracking_number": "1Z999",
                "tracking_url": "https://track.example.com/1Z999",
            },
        )
        same_but_republished = dict(shipped)
        await publish(nats.url, same_but_republished, revised, msg_ids=["r0", "r1"])
        got = await mail.wait_for(3, timeout=15)
        correction = got[2]
        assert "1Z999" in (correction.text or "")
        await _settled(client, "C-1")
        assert len(mail.messages()) == 3
        view = await order(client, "C-1")
        assert view is not None
        assert [n["template"] for n in view["notifications"] if n["channel"] == "email"] == [
            "order_confirmed",
            "shipped",
            "correction",
        ]
        assert view["events"][1]["revised"] is True


async def test_revision_that_changes_nothing_told_sends_nothing(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings) as (_service, client):
        placed = event("C-2", "placed", 0)
        await publish(nats.url, placed, event("C-2", "processing", 1))
        await mail.wait_for(1, timeout=15)
        revised = dict(
            event("C-2", "processing", 2), event_id=event("C-2", "processing", 1)["event_id"]
        )
        await publish(nats.url, revised, msg_ids=["rev"])
        await wait_until(lambda: _revised(client, "C-2"), timeout=15)
        await _settled(client, "C-2")
        assert len(mail.messages()) == 1


async def test_retraction_recomputes_state_and_corrects(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings) as (_service, client):
        cancelled = event("R-1", "cancelled", 1, reason="out of stock")
        # apart: a confirmation arriving with its cancellation would be stale, never sent
        await publish(nats.url, event("R-1", "placed", 0))
        await mail.wait_for(1, timeout=15)
        await publish(nats.url, cancelled)
        await mail.wait_for(2, timeout=15)
        await publish(nats.url, dict(cancelled, retracted=True), msg_ids=["retract"])
        got = await mail.wait_for(3, timeout=15)
        assert got[2].subject == "Please disregard our last message about order R-1"
        await wait_until(lambda: _state(client, "R-1", "placed"), timeout=15)
        view = await order(client, "R-1")
        assert view is not None
        assert [e["outcome"] for e in view["events"]] == ["applied", "retracted"]


async def test_out_of_order_event_is_recorded_and_never_notifies(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings) as (_service, client):
        await publish(
            nats.url,
            event("O-1", "placed", 0),
            event("O-1", "delivered", 10),
            event("O-1", "shipped", 5),
        )
        await wait_until(lambda: _outcomes(client, "O-1", 3), timeout=15)
        await _settled(client, "O-1")
        view = await order(client, "O-1")
        assert view is not None
        assert view["state"] == "delivered"
        assert [e["outcome"] for e in view["events"]] == ["applied", "applied", "stale"]
        assert [m.subject for m in mail.messages()] == [
            "Your order O-1 is confirmed",
            "Your order O-1 has been delivered",
        ]


async def test_bad_events_are_dead_lettered_with_reasons(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings) as (_service, client):
        no_id = event("P-1", "placed", 0)
        del no_id["event_id"]
        await publish(
            nats.url,
            b"{not json",
            no_id,
            event("P-1", "teleported", 0),
            event("P-2", "placed", 0),
            event("P-2", "delivered", 1),
            event("P-2", "processing", 2),
            dict(event("P-3", "placed", 3), event_id="P-2-placed-0"),
            msg_ids=["m1", "m2", "m3", "m4", "m5", "m6", "m7"],
        )
        nc = await _connect(nats.url)
        try:
            js = nc.jetstream()

            async def five() -> bool:
                return len(await list_dead_letters(js)) >= 5

            await wait_until(five, timeout=15)
            letters = await list_dead_letters(js)
        finally:
            await nc.close()
        reasons = [letter.reason for letter in letters]
        assert reasons == [
            "invalid_json",
            "schema_violation",
            "unknown_state",
            "illegal_transition",
            "event_id_conflict",
        ]
        assert letters[0].body == "{not json"
        assert "event_id" in letters[1].detail
        assert "teleported" in letters[2].detail
        assert "processing" in letters[3].detail
        json.loads(letters[3].body)
        # the consumer did not stall: a later good event still goes through
        await publish(nats.url, event("P-4", "placed", 0))
        await wait_until(lambda: _state(client, "P-4", "placed"), timeout=15)


async def test_smtp_down_then_up_delivers_everything_once(
    nats: NatsServer, database_url: str
) -> None:
    port = free_port()
    settings = settings_for(nats.url, database_url, port, smtp_timeout_s=1.0)
    async with running(settings) as (_service, client):
        await publish(nats.url, *[event(f"S-{i}", "placed", 0) for i in range(5)])
        await wait_until(lambda: _attempted(client, "S-0"), timeout=15)
        catcher = MailCatcher()
        await catcher.start(port=port)
        try:
            got = await catcher.wait_for(5, timeout=30)
            for i in range(5):
                await _settled(client, f"S-{i}")
            assert sorted(m.subject for m in got) == [
                f"Your order S-{i} is confirmed" for i in range(5)
            ]
            assert len(catcher.messages()) == 5
            view = await order(client, "S-0")
            assert view is not None
            sent = next(n for n in view["notifications"] if n["channel"] == "email")
            assert sent["status"] == "sent" and sent["attempts"] >= 2
        finally:
            await catcher.stop()


async def _connect(url: str) -> nats.NATS:
    return await nats.connect(url)


async def _state(client: object, order_id: str, state: str) -> bool:
    view = await order(client, order_id)  # type: ignore[arg-type]
    return view is not None and view["state"] == state


async def _revised(client: object, order_id: str) -> bool:
    view = await order(client, order_id)  # type: ignore[arg-type]
    return view is not None and any(e["revised"] for e in view["events"])


async def _outcomes(client: object, order_id: str, n: int) -> bool:
    view = await order(client, order_id)  # type: ignore[arg-type]
    return view is not None and len(view["events"]) == n


async def _attempted(client: object, order_id: str) -> bool:
    view = await order(client, order_id)  # type: ignore[arg-type]
    return view is not None and any(
        n["attempts"] >= 1 and n["last_error"]
        for n in view["notifications"]
        if n["channel"] == "email"
    )


async def _settled(client: object, order_id: str) -> None:
    async def done() -> bool:
        view = await order(client, order_id)  # type: ignore[arg-type]
        return view is not None and all(
            n["status"] not in ("queued", "sending") for n in view["notifications"]
        )

    await wait_until(done, timeout=15)


async def test_retries_never_let_a_later_message_overtake_an_earlier_one(
    nats: NatsServer, database_url: str
) -> None:
    port = free_port()
    # the breaker stays closed, so every message is retried on its own backoff
    settings = settings_for(
        nats.url, database_url, port, smtp_timeout_s=1.0, breaker_failures=10_000
    )
    orders = [f"Q-{i}" for i in range(8)]
    async with running(settings) as (_service, client):
        await publish(
            nats.url,
            *[event(o, "placed", 0) for o in orders],
            *[event(o, "shipped", 1) for o in orders],
        )
        await wait_until(lambda: _attempted(client, orders[-1]), timeout=15)
        catcher = MailCatcher()
        await catcher.start(port=port)
        try:
            got = await catcher.wait_for(len(orders) * 2, timeout=30)
        finally:
            await catcher.stop()
    for o in orders:
        assert [m.subject for m in got if f" {o} " in m.subject] == [
            f"Your order {o} is confirmed",
            f"Your order {o} has shipped",
        ]
