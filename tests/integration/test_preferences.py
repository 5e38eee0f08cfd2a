"""Customer preferences end to end: the API, opt-outs honoured at planning and when a
queued message is claimed, one-click unsubscribe from an alert email, an SMS STOP, and
erasure. Real NATS, real SMTP (aiosmtpd), the real Twilio client to the fake, SQLite
and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from httpx import AsyncClient
from sqlalchemy import insert

from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.devtools.twiliofake import TwilioFake
from notifier.store.db import create_engine
from notifier.store.maintenance import prune
from notifier.store.preferences import opt_out
from notifier.store.tables import notifications
from tests.integration.helpers import channel_settings, event, order, publish, running
from tests.support import wait_until

SECRET = "track-secret-0123456789abcdef"
BASE = "http://t"
PHONE = "+14155550123"
CUSTOMER = "cust-42"
#: the confirmation is transactional; "shipped" is an alert here
RULES = """
version: 1
rules:
  - name: order_confirmed
    when: {state: [placed]}
    template: order_confirmed
    channels: [email, sms]
  - name: shipped
    when: {state: [shipped]}
    template: shipped
    channels: [email, sms]
    category: alerts
"""
UNSUBSCRIBE = re.compile(rb"^List-Unsubscribe: <(http://t/u/[^>\s]+)>\r$", re.MULTILINE)


def _settings(
    nats: NatsServer, database_url: str, mail: MailCatcher, tmp_path: Path, **extra: Any
) -> Any:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return channel_settings(
        nats.url,
        database_url,
        mail.port,
        rules_file=rules,
        public_base_url=BASE,
        track_secret=SECRET,
        **extra,
    )


def _event(order_id: str, state: str, minute: int, **customer: Any) -> dict[str, Any]:
    body = event(order_id, state, minute, **customer)
    body["customer"]["id"] = CUSTOMER
    return body


async def _fates(client: AsyncClient, order_id: str, count: int) -> dict[tuple[str, str], Any]:
    """(template, channel) → (status, reason) once ``count`` notifications are settled."""

    async def settled() -> bool:
        view = await order(client, order_id)
        done = [
            n
            for n in (view or {}).get("notifications", [])
            if n["status"] in {"sent", "delivered", "suppressed", "failed"}
        ]
        return len(done) >= count

    await wait_until(settled, timeout=20)
    view = await order(client, order_id)
    assert view is not None
    return {
        (n["template"], n["channel"]): (n["status"], n["last_error"]) for n in view["notifications"]
    }


async def test_preferences_round_trip_and_clear_refusals(
    nats: NatsServer, database_url: str, mail: MailCatcher, tmp_path: Path
) -> None:
    async with running(_settings(nats, database_url, mail, tmp_path)) as (_service, client):
        url = f"/v1/customers/{CUSTOMER}/preferences"
        empty = (await client.get(url)).json()
        assert empty["channels"] == {"transactional": None, "alerts": None}
        assert empty["muted_orders"] == []
        document = {
            "channels": {"transactional": ["email"], "alerts": []},
            "preferred_channel": "email",
            "email": "ada.new@example.com",
            "phone": PHONE,
            "locale": "fr-FR",
            "timezone": "Europe/Paris",
            "quiet_hours": {"start": "22:00", "end": "07:30"},
            "muted_orders": ["o-9"],
        }
        put = await client.put(url, json=document)
        assert put.status_code == 200, put.text
        assert (await client.get(url)).json() == document

        floor = await client.put(url, json={"channels": {"transactional": []}})
        assert floor.status_code == 422
        [error] = floor.json()["detail"]
        assert error["loc"] == ["body", "channels", "transactional"]
        assert "at least one channel" in error["msg"]

        secret_address = "not-an-address-but-personal"
        bad = await client.put(
            url,
            json={"email": secret_address, "quiet_hours": {"start": "25:00", "end": "07:00"}},
        )
        assert bad.status_code == 422
        assert secret_address not in bad.text
        assert {tuple(e["loc"]) for e in bad.json()["detail"]} == {
            ("body", "email"),
            ("body", "quiet_hours", "start"),
        }
        unknown = await client.put(url, json={"channels": {"alerts": ["fax"]}})
        assert unknown.status_code == 422
        assert unknown.json()["detail"][0]["loc"] == ["body", "channels", "alerts", 0]
        # nothing refused was stored
        assert (await client.get(url)).json() == document


async def test_an_alert_opt_out_stops_alerts_but_not_transactional_messages(
    nats: NatsServer, database_url: str, mail: MailCatcher, tmp_path: Path
) -> None:
    async with running(_settings(nats, database_url, mail, tmp_path)) as (_service, client):
        put = await client.put(
            f"/v1/customers/{CUSTOMER}/preferences",
            json={"channels": {"alerts": []}, "email": "override@example.com"},
        )
        assert put.status_code == 200
        await publish(nats.url, _event("A-1", "placed", 0), _event("A-1", "shipped", 60))
        fates = await _fates(client, "A-1", 2)
        assert fates[("order_confirmed", "email")] == ("sent", None)
        assert fates[("shipped", "email")] == ("suppressed", "opted out (alerts on email)")
        [caught] = await mail.wait_for(1)
        assert caught.rcpt_tos == ["override@example.com"]  # the stored contact wins
        # a transactional email carries no unsubscribe header, but its preferences page
        assert b"List-Unsubscribe" not in mail.raw[0]
        assert caught.html is not None
        assert "http://t/preferences/" in caught.html


async def test_one_click_unsubscribe_from_an_alert_email(
    nats: NatsServer, database_url: str, mail: MailCatcher, tmp_path: Path
) -> None:
    async with running(_settings(nats, database_url, mail, tmp_path)) as (_service, client):
        await publish(nats.url, _event("B-1", "shipped", 0))
        await mail.wait_for(1)
        raw = mail.raw[0]
        # both headers whole, each on one line of the message as sent
        found = UNSUBSCRIBE.search(raw)
        assert found is not None, raw[:800]
        assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw
        link = found.group(1).decode()
        path = link.removeprefix(BASE)
        [caught] = mail.messages()
        assert caught.html is not None
        assert link in caught.html  # the footer's link too

        page = await client.get(path)  # mail scanners open links: nothing changes
        assert page.status_code == 200
        assert "<form" in page.text
        prefs_url = f"/v1/customers/{CUSTOMER}/preferences"
        assert (await client.get(prefs_url)).json()["channels"]["alerts"] is None

        tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
        refused = await client.post(tampered, content=b"List-Unsubscribe=One-Click")
        assert refused.status_code == 403
        assert "expired or was altered" in refused.text
        assert (await client.get(prefs_url)).json()["channels"]["alerts"] is None

        done = await client.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert done.status_code == 200
        alerts = (await client.get(prefs_url)).json()["channels"]["alerts"]
        assert "email" not in alerts
        assert "sms" in alerts

        await publish(nats.url, _event("B-2", "placed", 5), _event("B-2", "shipped", 65))
        fates = await _fates(client, "B-2", 2)
        assert fates[("shipped", "email")] == ("suppressed", "opted out (alerts on email)")
        assert fates[("order_confirmed", "email")] == ("sent", None)


async def test_an_sms_stop_opts_the_customer_out_of_sms(
    nats: NatsServer, database_url: str, mail: MailCatcher, twilio: TwilioFake, tmp_path: Path
) -> None:
    twilio.unsubscribed_numbers.add(PHONE)
    settings = _settings(nats, database_url, mail, tmp_path, twilio=twilio)
    async with running(settings) as (_service, client):
        await publish(nats.url, _event("C-1", "placed", 0, phone=PHONE))
        fates = await _fates(client, "C-1", 2)
        assert fates[("order_confirmed", "sms")] == ("suppressed", "recipient replied STOP")
        asked = twilio.request_count
        assert fates[("order_confirmed", "email")] == ("sent", None)
        channels = (await client.get(f"/v1/customers/{CUSTOMER}/preferences")).json()["channels"]
        assert "sms" not in channels["transactional"]
        assert "email" in channels["transactional"]
        assert "sms" not in channels["alerts"]

        await publish(nats.url, _event("C-2", "placed", 5, phone=PHONE))
        fates = await _fates(client, "C-2", 2)
        assert fates[("order_confirmed", "sms")] == (
            "suppressed",
            "opted out (transactional on sms)",
        )
        assert twilio.request_count == asked  # refused at planning: never sent


async def test_a_queued_message_is_suppressed_when_claimed_after_an_opt_out(
    nats: NatsServer, database_url: str, mail: MailCatcher, tmp_path: Path
) -> None:
    async with running(_settings(nats, database_url, mail, tmp_path)) as (service, client):
        await publish(nats.url, _event("D-1", "placed", 0))
        await _fates(client, "D-1", 1)
        # a row planned before the opt-out, as planning left it: queued, its dispatch
        # message still to be published
        now = datetime.now(UTC)
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    insert(notifications).values(
                        id="n-late-alert",
                        idempotency_key="late:shipped:email",
                        event_id="late",
                        order_id="D-1",
                        customer_id=CUSTOMER,
                        channel="email",
                        template="shipped",
                        state="shipped",
                        recipient="ada@example.com",
                        subject="Shipped",
                        body_text="on its way",
                        status="queued",
                        priority=1,
                        event_seq=10**9,
                        digest="d",
                        category="alerts",
                        dispatch_pending=True,
                        dispatch_gen=1,
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                        updated_at=now,
                    )
                )
            await opt_out(engine, CUSTOMER, "email", ["alerts"])
        finally:
            await engine.dispose()
        service.outbox.wake()

        async def withheld() -> bool:
            view = await order(client, "D-1")
            found = [n for n in (view or {}).get("notifications", []) if n["id"] == "n-late-alert"]
            return bool(found) and found[0]["status"] == "suppressed"

        await wait_until(withheld, timeout=20)
        view = await order(client, "D-1")
        assert view is not None
        [late] = [n for n in view["notifications"] if n["id"] == "n-late-alert"]
        assert late["last_error"] == "opted out (alerts on email)"
        assert len(mail.messages()) == 1  # the confirmation only


async def test_erasure_removes_the_stored_preferences(
    nats: NatsServer, database_url: str, mail: MailCatcher, tmp_path: Path
) -> None:
    async with running(_settings(nats, database_url, mail, tmp_path)) as (_service, client):
        url = f"/v1/customers/{CUSTOMER}/preferences"
        assert (await client.put(url, json={"email": "ada@example.com"})).status_code == 200
        erased = await client.delete(f"/v1/customers/{CUSTOMER}/personal-data")
        assert erased.status_code == 200
        assert erased.json()["preferences"] == 1
        assert (await client.get(url)).json()["email"] is None


async def test_retention_forgets_preferences_of_customers_with_no_order_left(
    nats: NatsServer, database_url: str, mail: MailCatcher, tmp_path: Path
) -> None:
    async with running(_settings(nats, database_url, mail, tmp_path)) as (service, client):
        await client.put("/v1/customers/gone/preferences", json={"phone": PHONE})
        await client.put(f"/v1/customers/{CUSTOMER}/preferences", json={"locale": "fr"})
        await publish(nats.url, _event("E-1", "placed", 0))
        await _fates(client, "E-1", 1)
        later = datetime.now(UTC) + timedelta(days=2)
        report = await prune(service.engine, dedup_days=30, notification_days=1, now=later)
        assert report.preferences == 1
        assert (await client.get("/v1/customers/gone/preferences")).json()["phone"] is None
        kept = (await client.get(f"/v1/customers/{CUSTOMER}/preferences")).json()
        assert kept["locale"] == "fr"  # still ordering
