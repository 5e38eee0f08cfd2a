"""Never stale and quiet hours through the real service: NATS, the ledger (SQLite and
PostgreSQL), the FCM and Twilio fakes and the mail catcher.

Quiet hours are tested without waiting for a night: the window is computed around the
real "now" in the customer's zone (``Europe/Paris`` in ``helpers.event``), one that has
started and ends a few seconds from now, or in an hour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from notifier.config import Role, Settings
from notifier.devtools.fcmfake import FcmFake
from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.devtools.twiliofake import TwilioFake
from tests.integration.helpers import channel_settings, event, order, publish, running
from tests.support import wait_until

PARIS = ZoneInfo("Europe/Paris")
PUSH = "tok-1"
PHONE = "+33612345678"

#: every message normal but delivery_failed, and no fallback: each channel on its own
RULES = """\
version: 1
rules:
  - {name: shipped, when: {state: [shipped]}, template: shipped, channels: [push, email]}
  - name: out_for_delivery
    when: {state: [out_for_delivery]}
    template: out_for_delivery
    channels: [push, email]
  - name: delivered
    when: {state: [delivered]}
    template: delivered
    channels: [push, sms, email]
  - name: delivery_failed
    when: {state: [delivery_failed]}
    template: delivery_failed
    channels: [push]
    priority: urgent
"""


def quiet_window(ends_in_s: float) -> str:
    """A window, in Paris time, that began an hour ago and ends ``ends_in_s`` from now."""
    now = datetime.now(UTC).astimezone(PARIS)
    start, end = now - timedelta(hours=1), now + timedelta(seconds=ends_in_s)
    return f"{start:%H:%M:%S}-{end:%H:%M:%S}"


def settings(
    nats: NatsServer,
    database_url: str,
    mail: MailCatcher,
    fcm: FcmFake,
    tmp_path: Path,
    **overrides: Any,
) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return channel_settings(
        nats.url,
        database_url,
        mail.port,
        fcm=fcm,
        credentials=tmp_path / "fcm-credentials.json",
        rules_file=rules,
        **overrides,
    )


def shipment(order_id: str, state: str, minute: int) -> dict[str, Any]:
    return event(order_id, state, minute, phone=PHONE, push_tokens=[PUSH])


def rows(view: dict[str, Any] | None, channel: str) -> dict[str, dict[str, Any]]:
    """template → the order's notification on ``channel``."""
    assert view is not None
    return {n["template"]: n for n in view["notifications"] if n["channel"] == channel}


async def test_out_for_delivery_and_delivered_together_push_only_delivered(
    nats: NatsServer, database_url: str, mail: MailCatcher, fcm: FcmFake, tmp_path: Path
) -> None:
    # both events wait in the stream before the service starts: one batch plans them
    await publish(nats.url, shipment("S-1", "out_for_delivery", 0), shipment("S-1", "delivered", 1))
    async with running(settings(nats, database_url, mail, fcm, tmp_path, quiet_hours="")) as (
        _service,
        client,
    ):
        await fcm.wait_for(1)
        await mail.wait_for(1)
        view = await order(client, "S-1")
        push = rows(view, "push")
        assert push["out_for_delivery"]["status"] == "suppressed"
        assert push["out_for_delivery"]["last_error"] == "stale: shipment is delivered"
        assert rows(view, "email")["out_for_delivery"]["status"] == "suppressed"
        await wait_until(
            lambda: len(fcm.messages()) == 1 and len(mail.messages()) == 1, timeout=2.0
        )
        assert [p.title for p in fcm.messages()] == [push["delivered"]["subject"]]


async def test_a_queued_push_the_order_moved_past_is_suppressed_at_claim(
    nats: NatsServer, database_url: str, mail: MailCatcher, fcm: FcmFake, tmp_path: Path
) -> None:
    # an ingest-only process plans and queues; nothing sends until a dispatcher starts
    ingest = settings(nats, database_url, mail, fcm, tmp_path, role=Role.INGEST)
    async with running(ingest) as (_service, client):
        await publish(nats.url, shipment("S-2", "shipped", 0))
        await wait_until(lambda: _status(client, "S-2", "push", "shipped", "queued"))
        await publish(nats.url, shipment("S-2", "delivered", 1))
        await wait_until(lambda: _status(client, "S-2", "push", "delivered", "queued"))
    assert fcm.messages() == []
    async with running(settings(nats, database_url, mail, fcm, tmp_path)) as (_service, client):
        await wait_until(lambda: _status(client, "S-2", "push", "delivered", "sent"))
        await wait_until(lambda: _status(client, "S-2", "push", "shipped", "suppressed"))
        push = rows(await order(client, "S-2"), "push")
        assert push["shipped"]["last_error"] == "stale: shipment is delivered"
        assert [p.title for p in fcm.messages()] == [push["delivered"]["subject"]]
        # email and SMS carry the same story: stale email suppressed, the rest sent
        await wait_until(lambda: _status(client, "S-2", "email", "delivered", "sent"))
        assert rows(await order(client, "S-2"), "email")["shipped"]["status"] == "suppressed"


async def test_quiet_hours_hold_push_and_sms_then_send_only_the_latest_state(
    nats: NatsServer,
    database_url: str,
    mail: MailCatcher,
    fcm: FcmFake,
    twilio: TwilioFake,
    tmp_path: Path,
) -> None:
    held = settings(
        nats,
        database_url,
        mail,
        fcm,
        tmp_path,
        quiet_hours=quiet_window(ends_in_s=6),
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from="+15005550006",
        twilio_api_base=twilio.base_url,
    )
    async with running(held) as (_service, client):
        await publish(nats.url, shipment("Q-1", "out_for_delivery", 0))
        await mail.wait_for(1)  # email is never held
        await wait_until(lambda: _status(client, "Q-1", "push", "out_for_delivery", "queued"))
        ofd = rows(await order(client, "Q-1"), "push")["out_for_delivery"]
        until = datetime.fromisoformat(ofd["not_before"])
        assert timedelta(0) < until - datetime.now(UTC) <= timedelta(seconds=7)
        # the parcel is delivered while the push waits
        await publish(nats.url, shipment("Q-1", "delivered", 1))
        await mail.wait_for(2)
        view = await order(client, "Q-1")
        assert rows(view, "sms")["delivered"]["not_before"] is not None
        assert fcm.messages() == [] and twilio.messages() == []
        # the window ends: the customer hears "delivered" once, on push and on SMS
        await wait_until(lambda: _status(client, "Q-1", "push", "delivered", "sent"), 15)
        await wait_until(lambda: _status(client, "Q-1", "sms", "delivered", "sent"), 5)
        push = rows(await order(client, "Q-1"), "push")
        assert push["out_for_delivery"]["status"] == "suppressed"
        assert push["out_for_delivery"]["last_error"] == "stale: shipment is delivered"
        assert [p.title for p in fcm.messages()] == [push["delivered"]["subject"]]
        assert len(twilio.messages()) == 1


async def test_quiet_hours_let_urgent_push_and_email_through_at_once(
    nats: NatsServer, database_url: str, mail: MailCatcher, fcm: FcmFake, tmp_path: Path
) -> None:
    night = settings(
        nats, database_url, mail, fcm, tmp_path, quiet_hours=quiet_window(ends_in_s=3600)
    )
    async with running(night) as (_service, client):
        await publish(nats.url, shipment("U-1", "shipped", 0))
        await mail.wait_for(1)  # the normal email goes; its push waits for the morning
        await wait_until(lambda: _status(client, "U-1", "push", "shipped", "queued"))
        # an urgent push of the same order is not held, nor held back by the held one
        await publish(nats.url, shipment("U-1", "delivery_failed", 1))
        [pushed] = await fcm.wait_for(1)
        push = rows(await order(client, "U-1"), "push")
        assert pushed.title == push["delivery_failed"]["subject"]
        assert push["delivery_failed"]["not_before"] is None
        assert push["shipped"]["status"] == "queued"
        assert push["shipped"]["not_before"] is not None


async def _status(client: Any, order_id: str, channel: str, template: str, status: str) -> bool:
    view = await order(client, order_id)
    if view is None:
        return False
    found = rows(view, channel).get(template)
    return found is not None and found["status"] == status
