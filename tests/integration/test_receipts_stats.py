"""Receipts, dead push tokens, fallback, partner webhooks, delivery stats and ops alerts,
end to end through the running service against the Twilio, FCM, SMTP and webhook fakes."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import nats as nats_client
from httpx import AsyncClient
from nats import connect as nats_connect
from prometheus_client.parser import text_string_to_metric_families
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from notifier.channels.webhook import SIGNATURE_HEADER, verify
from notifier.delivery.deadletters import (
    NotificationDeadLetter,
    ReplayReport,
    notification_dead_letters,
    replay,
)
from notifier.delivery.ledger import token_hash
from notifier.devtools.fcmfake import FcmFake
from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer, free_port
from notifier.devtools.twiliofake import TwilioFake
from notifier.devtools.twiliowire import CallbackAttempt
from notifier.devtools.webhookreceiver import WebhookReceiver
from notifier.store.db import create_engine
from tests.integration.conftest import TWILIO_TOKEN, WEBHOOK_SECRET
from tests.integration.helpers import (
    channel_settings,
    event,
    order,
    publish,
    running,
    serving,
)
from tests.support import wait_until

RECEIPTS = "/v1/receipts/twilio"
#: a notification's status after which nothing more happens to it (an SMS waits for
#: its receipt while ``sent``)
FINAL = frozenset({"delivered", "undelivered", "failed", "suppressed"})

SIMPLE_RULES = """\
version: 1
rules:
  - name: shipped
    when: {state: [shipped]}
    template: shipped
    channels: [email, push, sms]
  - name: delivered
    when: {state: [delivered]}
    template: delivered
    channels: [email, push]
"""

FALLBACK_RULES = """\
version: 1
rules:
  - name: out_for_delivery
    when: {state: [out_for_delivery]}
    template: out_for_delivery
    channels: [push, sms, email]
    priority: high
    fallback: true
"""


def _rules(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def _rows(client: AsyncClient, order_id: str) -> list[dict[str, Any]]:
    view = await order(client, order_id)
    return [] if view is None else list(view["notifications"])


async def _row(
    client: AsyncClient, order_id: str, channel: str, template: str | None = None
) -> dict[str, Any] | None:
    """The order's one notification on ``channel`` (for ``template``, if given)."""
    found = [
        r
        for r in await _rows(client, order_id)
        if r["channel"] == channel and template in (None, r["template"])
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


async def _wait_status(
    client: AsyncClient,
    order_id: str,
    channel: str,
    status: str,
    template: str | None = None,
    timeout: float = 15,  # noqa: ASYNC109
) -> dict[str, Any]:
    async def reached() -> bool:
        row = await _row(client, order_id, channel, template)
        return row is not None and row["status"] == status

    await wait_until(reached, timeout=timeout)
    row = await _row(client, order_id, channel, template)
    assert row is not None
    return row


async def _wait_settled(
    client: AsyncClient,
    order_ids: Iterable[str],
    *,
    rows: int,
    timeout: float = 20,  # noqa: ASYNC109
) -> None:
    """Every order has ``rows`` notifications and none of them can still change (a
    receipt may land before the send itself is recorded: that is waited for too)."""

    async def settled() -> bool:
        for order_id in order_ids:
            found = await _rows(client, order_id)
            if len(found) != rows or not all(
                (r["status"] in FINAL or (r["status"] == "sent" and r["channel"] != "sms"))
                and (r["provider_message_id"] is None or r["sent_at"] is not None)
                for r in found
            ):
                return False
        return True

    await wait_until(settled, timeout=timeout)


def _metric(text: str, sample: str, **labels: str) -> float:
    """The sum of ``sample`` over every series whose labels include ``labels``."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def _replay_channel(
    nats_url: str, database_url: str, channel: str
) -> tuple[ReplayReport, list[NotificationDeadLetter]]:
    """Replay every dead letter of a channel; what it did, and the dead letters left."""
    nc = await nats_client.connect(nats_url)
    engine = create_engine(database_url)
    try:
        js = nc.jetstream()
        report = await replay(js, engine, await notification_dead_letters(js, channel=channel))
        return report, await notification_dead_letters(js, channel=channel)
    finally:
        await engine.dispose()
        await nc.close()


async def _metrics(client: AsyncClient) -> str:
    response = await client.get("/metrics")
    response.raise_for_status()
    return response.text


# 1. Twilio receipts: forgeries are refused, genuine ones land once and never go back


async def test_forged_twilio_receipts_are_refused_and_genuine_ones_land_once(
    nats: NatsServer,
    twilio: TwilioFake,
    tmp_path: Path,
    database_url: str,
) -> None:
    # Twilio is given a public base URL that no one listens on (as behind a proxy): its
    # callbacks are captured by the fake, and the test replays them, byte for byte, to
    # the service after trying forgeries while the SMS is still only ``sent``.
    http_port, public = free_port(), f"http://127.0.0.1:{free_port()}"
    settings = channel_settings(
        nats.url,
        database_url,
        None,
        twilio=twilio,
        http_port=http_port,
        public_base_url=public,
        rules_file=_rules(tmp_path, SIMPLE_RULES),
    )
    twilio.undelivered_numbers.add("+14155550199")
    async with serving(settings) as (_service, client):
        await publish(
            nats.url,
            event("R-1", "shipped", 0, email=None, phone="+14155550100"),
            event("R-2", "shipped", 0, email=None, phone="+14155550199"),
        )
        sms = await _wait_status(client, "R-1", "sms", "sent")
        await _wait_status(client, "R-2", "sms", "sent")
        callbacks = await twilio.wait_for_callbacks(4, timeout=10)
        assert all(c.response_status is None for c in callbacks)  # nobody at `public`

        def attempts(sid: str) -> dict[str, CallbackAttempt]:
            return {c.message_status: c for c in callbacks if c.sid == sid}

        genuine = attempts(sms["provider_message_id"])
        delivered = genuine["delivered"]
        assert delivered.url == f"{public}{RECEIPTS}?n={sms['id']}"
        path = delivered.url.removeprefix(public)
        lie = {
            **delivered.params,
            "MessageStatus": "undelivered",
            "SmsStatus": "undelivered",
            "ErrorCode": "30003",
        }
        validator = RequestValidator(TWILIO_TOKEN)
        forgeries: dict[str, dict[str, str]] = {
            "no signature": {},
            "empty signature": {"X-Twilio-Signature": ""},
            "another key": {
                "X-Twilio-Signature": RequestValidator(
                    "not-the-auth-token-0123456789ab"
                ).compute_signature(public + path, lie)
            },
            "params tampered": {"X-Twilio-Signature": delivered.signature},
            "another notification's URL": {
                "X-Twilio-Signature": validator.compute_signature(
                    f"{public}{RECEIPTS}?n=someone-else", lie
                )
            },
            "the URL as called, not the public one": {
                "X-Twilio-Signature": validator.compute_signature(
                    f"http://127.0.0.1:{http_port}{path}", lie
                )
            },
        }
        for why, headers in forgeries.items():
            response = await client.post(path, data=lie, headers=headers)
            assert response.status_code == 403, why
        assert await _row(client, "R-1", "sms") == sms  # not even updated_at moved
        text = await _metrics(client)
        assert _metric(text, "notifier_receipts_total", status="forged") == len(forgeries)
        assert _metric(text, "notifier_receipts_total", status="undelivered") == 0

        for attempt in (genuine["sent"], delivered):
            response = await client.post(
                path, data=attempt.params, headers={"X-Twilio-Signature": attempt.signature}
            )
            assert response.status_code == 204
        landed = await _row(client, "R-1", "sms")
        assert landed is not None and landed["status"] == "delivered"

        # a repeated receipt, and a later (genuinely signed) undelivered one, change nothing
        response = await client.post(
            path, data=delivered.params, headers={"X-Twilio-Signature": delivered.signature}
        )
        assert response.status_code == 204
        response = await client.post(
            path,
            data=lie,
            headers={"X-Twilio-Signature": validator.compute_signature(public + path, lie)},
        )
        assert response.status_code == 204
        assert await _row(client, "R-1", "sms") == landed
        text = await _metrics(client)
        assert _metric(text, "notifier_notifications_total", channel="sms", status="delivered") == 1
        assert (
            _metric(text, "notifier_notifications_total", channel="sms", status="undelivered") == 0
        )

        other = await _row(client, "R-2", "sms")
        assert other is not None
        for attempt in attempts(other["provider_message_id"]).values():
            response = await client.post(
                attempt.url.removeprefix(public),
                data=attempt.params,
                headers={"X-Twilio-Signature": attempt.signature},
            )
            assert response.status_code == 204
        other = await _row(client, "R-2", "sms")
        assert other is not None and other["status"] == "undelivered"
        assert "30003" in other["last_error"]


async def test_a_receipt_that_overtakes_the_send_record_keeps_its_word(
    nats: NatsServer,
    twilio: TwilioFake,
    tmp_path: Path,
    database_url: str,
) -> None:
    # Twilio may call back before its own answer to the send is recorded: the receipt
    # then lands on a ``sending`` row, and recording the send must not wipe it out.
    public = f"http://127.0.0.1:{free_port()}"  # the fake's own callbacks go nowhere
    settings = channel_settings(
        nats.url,
        database_url,
        None,
        twilio=twilio,
        http_port=free_port(),
        public_base_url=public,
        rules_file=_rules(tmp_path, SIMPLE_RULES),
    )
    twilio.latency_s = 1.5  # each send stays in flight this long
    validator = RequestValidator(TWILIO_TOKEN)
    cases = {  # order: (phone, what the early receipt says, Twilio's error code)
        "O-1": ("+14155550120", "undelivered", "30003"),
        "O-2": ("+14155550121", "failed", "30008"),
    }
    async with running(settings) as (_service, client):
        await publish(
            nats.url,
            *(
                event(o, "shipped", 0, email=None, phone=phone)
                for o, (phone, _, _) in cases.items()
            ),
        )
        for order_id, (phone, status, code) in cases.items():
            row = await _wait_status(client, order_id, "sms", "sending")
            path = f"{RECEIPTS}?n={row['id']}"
            # Twilio's callback would carry the message's real sid, not known here yet
            params = {
                "AccountSid": twilio.account_sid,
                "MessageSid": "SM" + "0" * 32,
                "MessageStatus": status,
                "ErrorCode": code,
                "To": phone,
            }
            response = await client.post(
                path,
                data=params,
                headers={"X-Twilio-Signature": validator.compute_signature(public + path, params)},
            )
            assert response.status_code == 204
        sids = {m.to: m.sid for m in await twilio.wait_for(2, timeout=10)}

        async def sends_recorded() -> bool:
            rows = [await _row(client, o, "sms") for o in cases]
            return all(r is not None and r["sent_at"] is not None for r in rows)

        await wait_until(sends_recorded, timeout=10)
        for order_id, (phone, status, code) in cases.items():
            row = await _row(client, order_id, "sms")
            assert row is not None
            assert (row["status"], row["last_error"]) == (status, f"receipt: {status} ({code})")
            assert (row["provider"], row["provider_message_id"]) == ("twilio", sids[phone])


# 2. Dead push tokens are remembered (by hash) and never used again


async def test_a_dead_push_token_is_never_used_again_and_erasure_forgets_it(
    nats: NatsServer,
    fcm: FcmFake,
    tmp_path: Path,
    database_url: str,
) -> None:
    token = "dead-token:APA91b-0123456789"
    fcm.dead_tokens.add(token)
    settings = channel_settings(
        nats.url,
        database_url,
        None,
        fcm=fcm,
        credentials=tmp_path / "fcm-credentials.json",
        rules_file=_rules(tmp_path, SIMPLE_RULES),
    )
    async with running(settings) as (_service, client):
        await publish(nats.url, event("D-1", "shipped", 0, email=None, push_tokens=[token]))
        first = await _wait_status(client, "D-1", "push", "failed", "shipped")
        assert first["last_error"].startswith("unregistered")
        assert fcm.send_requests == 1 and fcm.messages() == []
        nc = await nats_connect(nats.url)
        try:
            letters = await notification_dead_letters(nc.jetstream(), channel="push")
        finally:
            await nc.close()
        assert [(d.notification_id, d.reason) for d in letters] == [(first["id"], "dead_recipient")]

        response = await client.get("/v1/customers/cust-D-1/dead-push-tokens")
        assert response.status_code == 200
        assert token not in response.text
        listed = response.json()["dead_push_tokens"]
        assert [(d["token_sha256_prefix"], d["reason"]) for d in listed] == [
            (token_hash(token)[:12], "unregistered")
        ]
        assert datetime.fromisoformat(listed[0]["marked_at"]).utcoffset() == timedelta(0)

        await publish(nats.url, event("D-1", "delivered", 5, email=None, push_tokens=[token]))
        later = await _wait_status(client, "D-1", "push", "suppressed", "delivered")
        assert "unregistered" in later["last_error"]
        assert fcm.send_requests == 1  # FCM never heard of it again

        response = await client.delete("/v1/customers/cust-D-1/personal-data")
        assert response.status_code == 200
        response = await client.get("/v1/customers/cust-D-1/dead-push-tokens")
        assert response.json()["dead_push_tokens"] == []


# 3. A fallback rule: one channel at a time, the next only when the one before fails


async def test_a_fallback_rule_moves_on_only_when_a_channel_fails(
    nats: NatsServer,
    mail: MailCatcher,
    twilio: TwilioFake,
    fcm: FcmFake,
    tmp_path: Path,
    database_url: str,
) -> None:
    fcm.invalid_tokens.add("tok-invalid")
    fcm.dead_tokens.add("tok-dead")
    twilio.undelivered_numbers.add("+14155550302")
    settings = channel_settings(
        nats.url,
        database_url,
        mail.port,
        twilio=twilio,
        fcm=fcm,
        credentials=tmp_path / "fcm-credentials.json",
        http_port=free_port(),
        rules_file=_rules(tmp_path, FALLBACK_RULES),
    )
    customers = {  # order: (push token, phone)
        "F-a": ("tok-invalid", "+14155550301"),  # push refused → sms, delivered
        "F-b": (None, "+14155550302"),  # no push → sms, undelivered → email
        "F-c": ("tok-good", "+14155550303"),  # push accepted → nothing else
        "F-d": (None, "+14155550304"),  # no push → sms first, delivered
        "F-e": ("tok-dead", "+14155550305"),  # dead token → sms, delivered
    }

    def ofd(order_id: str, minute: int = 0, shipment: str = "p1") -> dict[str, Any]:
        token, phone = customers[order_id]
        return event(
            order_id,
            "out_for_delivery",
            minute,
            email=f"{order_id}@example.com",
            phone=phone,
            push_tokens=[token] if token else None,
            shipment={"id": shipment, "carrier": "DHL"},
        )

    async with serving(settings) as (_service, client):
        await publish(nats.url, *(ofd(o) for o in customers))
        await _wait_settled(client, customers, rows=3)

        async def fates(order_id: str) -> dict[str, tuple[str, str | None]]:
            return {
                r["channel"]: (r["status"], r["last_error"]) for r in await _rows(client, order_id)
            }

        a, b, c, d, e = [await fates(o) for o in customers]
        assert a["push"][0] == "failed" and a["push"][1].startswith("invalid_argument")
        assert a["sms"] == ("delivered", None)
        assert a["email"] == ("suppressed", "delivered on sms")
        assert b["push"] == ("suppressed", "customer has no push token")
        assert b["sms"] == ("undelivered", "receipt: undelivered (30003)")
        assert b["email"][0] == "sent"
        assert c["push"] == ("sent", None)
        assert c["sms"] == c["email"] == ("suppressed", "delivered on push")
        assert d["push"] == ("suppressed", "customer has no push token")
        assert d["sms"] == ("delivered", None)
        assert d["email"] == ("suppressed", "delivered on sms")
        assert e["push"][0] == "failed" and e["push"][1].startswith("unregistered")
        assert e["sms"] == ("delivered", None)

        # a later transition for the customer with the dead token: FCM is not asked again
        requests = fcm.send_requests
        await publish(nats.url, ofd("F-e", 5, shipment="p2"))
        await _wait_settled(client, ["F-e"], rows=6)
        second = {
            r["channel"]: r
            for r in await _rows(client, "F-e")
            if r["event_id"] == "F-e-out_for_delivery-5"
        }
        assert second["push"]["status"] == "suppressed"
        assert "unregistered" in second["push"]["last_error"]
        assert second["sms"]["status"] == "delivered"
        assert fcm.send_requests == requests

        assert sorted(m.to for m in twilio.messages()) == [
            "+14155550301",
            "+14155550302",
            "+14155550304",
            "+14155550305",
            "+14155550305",
        ]
        assert [p.token for p in fcm.messages()] == ["tok-good"]
        assert [m.rcpt_tos for m in mail.messages()] == [["F-b@example.com"]]

        # replaying the dead-lettered pushes would tell those customers twice: their
        # SMS got through, so replay re-drives nothing and removes the dead letters
        report, left = await _replay_channel(nats.url, database_url, "push")
        assert report.replayed == [] and len(report.stale) == 2
        assert left == []
        await asyncio.sleep(1.0)  # an outbox pass would have published anything re-queued
        assert fcm.send_requests == requests


async def test_a_fallback_channel_that_cannot_be_rendered_hands_over_at_once(
    nats: NatsServer,
    mail: MailCatcher,
    twilio: TwilioFake,
    tmp_path: Path,
    database_url: str,
) -> None:
    # One SMS segment is allowed and the tracking link makes the text longer: the SMS
    # fails when it is rendered, before any send, so no receipt or send failure will
    # ever hand over to the email; the plan must queue it at once.
    settings = channel_settings(
        nats.url,
        database_url,
        mail.port,
        twilio=twilio,
        http_port=free_port(),
        rules_file=_rules(tmp_path, FALLBACK_RULES),
        sms_max_segments=1,
    )
    shipment = {
        "id": "p1",
        "carrier": "DHL",
        "tracking_url": "https://track.example.com/" + "x" * 160,
    }
    async with serving(settings) as (_service, client):
        await publish(
            nats.url,
            event(
                "F-f",
                "out_for_delivery",
                0,
                email="F-f@example.com",
                phone="+14155550306",
                shipment=shipment,
            ),
        )
        sms = await _wait_status(client, "F-f", "sms", "failed")
        assert "SMS segments" in sms["last_error"]
        await _wait_status(client, "F-f", "email", "sent")
        assert [m.rcpt_tos for m in await mail.wait_for(1)] == [["F-f@example.com"]]
        assert twilio.request_count == 0


# 4. Partner webhooks: each wanted transition once, signed, with no personal data


async def test_webhook_deliveries_are_signed_once_per_wanted_transition_without_contacts(
    nats: NatsServer,
    receiver: WebhookReceiver,
    tmp_path: Path,
    database_url: str,
) -> None:
    hooks = tmp_path / "webhooks.yaml"
    hooks.write_text(
        "version: 1\nendpoints:\n"
        f"  - name: acme\n    url: {receiver.url('/hooks/acme')}\n"
        f"    secret: {WEBHOOK_SECRET}\n    states: [shipped, delivered]\n",
        encoding="utf-8",
    )
    settings = channel_settings(
        nats.url,
        database_url,
        None,
        webhooks_file=hooks,
        rules_file=_rules(tmp_path, SIMPLE_RULES),
    )
    contacts = {
        "email": "ada.private@example.com",
        "phone": "+14155550400",
        "push_tokens": ["tok-private-0123456789"],
    }
    receiver.respond(500)  # the first delivery is refused once
    async with running(settings) as (_service, client):
        await publish(
            nats.url,
            *(
                event("W-1", state, minute, **contacts)
                for minute, state in enumerate(["placed", "shipped", "in_transit", "delivered"])
            ),
        )

        async def both_sent() -> bool:
            rows = [r for r in await _rows(client, "W-1") if r["channel"] == "webhook"]
            return len(rows) == 2 and all(r["status"] == "sent" for r in rows)

        await wait_until(both_sent, timeout=15)
        rows = {r["state"]: r for r in await _rows(client, "W-1") if r["channel"] == "webhook"}
        assert set(rows) == {"shipped", "delivered"}  # placed, in_transit: not wanted

    got = receiver.deliveries("/hooks/acme")
    assert len(got) == 3 and receiver.deliveries() == got
    refused = [d for d in got if d.status == 500]
    accepted = {d.delivery_id: d for d in got if d.status == 200}
    assert len(refused) == 1 and len(accepted) == 2
    assert refused[0].delivery_id in accepted  # the retry of it arrived, once
    assert set(accepted) == {r["id"] for r in rows.values()}
    for state, row in rows.items():
        delivery = accepted[row["id"]]
        assert delivery.verified
        assert verify(WEBHOOK_SECRET, delivery.headers[SIGNATURE_HEADER], delivery.body)
        body = delivery.json
        assert body["delivery_id"] == row["id"] and body["endpoint"] == "acme"
        assert body["event"]["event_id"] == row["event_id"]
        assert body["event"]["state"] == state and body["event"]["order_id"] == "W-1"
        assert body["event"]["customer_id"] == "cust-W-1"
        assert body["transition"]["to"] == state
        raw = delivery.body.decode() + json.dumps(delivery.headers)
        for secret in (
            contacts["email"],
            contacts["phone"],
            *contacts["push_tokens"],
            "Ada Lovelace",
        ):
            assert secret not in raw
    assert accepted[rows["shipped"]["id"]].json["transition"]["from"] is None
    assert accepted[rows["delivered"]["id"]].json["transition"]["from"] == "in_transit"


# 5. Delivery stats, per channel and per group, add up to what the providers saw


async def test_delivery_stats_and_metrics_add_up_to_what_the_providers_saw(
    nats: NatsServer,
    mail: MailCatcher,
    twilio: TwilioFake,
    fcm: FcmFake,
    tmp_path: Path,
    database_url: str,
) -> None:
    twilio.invalid_numbers |= {"+14155550502", "+14155550504"}
    twilio.undelivered_numbers.add("+14155550503")
    twilio.failed_numbers.add("+14155550506")
    fcm.dead_tokens.add("tok-S-2")
    customers = {  # order: (phone, push token)
        "S-1": ("+14155550501", "tok-S-1"),
        "S-2": ("+14155550502", "tok-S-2"),
        "S-3": ("+14155550503", "tok-S-3"),
        "S-4": ("+14155550504", None),
        "S-5": (None, "tok-S-5"),
        "S-6": ("+14155550506", "tok-S-6"),
    }
    settings = channel_settings(
        nats.url,
        database_url,
        mail.port,
        twilio=twilio,
        fcm=fcm,
        credentials=tmp_path / "fcm-credentials.json",
        http_port=free_port(),
        rules_file=_rules(tmp_path, SIMPLE_RULES),
    )
    async with serving(settings) as (service, client):
        await publish(
            nats.url,
            *(
                event(
                    o,
                    "shipped",
                    0,
                    email=f"{o}@example.com",
                    phone=phone,
                    push_tokens=[token] if token else None,
                )
                for o, (phone, token) in customers.items()
            ),
        )
        await _wait_settled(client, customers, rows=3)
        response = await client.get("/v1/stats/delivery", params={"window": "1h"})
        assert response.status_code == 200
        stats = response.json()
        accepted_anywhere = len(twilio.messages()) + len(fcm.messages()) + len(mail.messages())

        async def counted() -> bool:  # a sender counts just after the ledger says sent
            text = await _metrics(client)
            return _metric(text, "notifier_notifications_total", status="sent") == accepted_anywhere

        await wait_until(counted)
        text = await _metrics(client)

        texts = Counter(m.status for m in twilio.messages())
        refused_sms = twilio.request_count - len(twilio.messages())
        seen = {  # what the providers accepted and refused, in the ledger's terms
            "sms": {
                "sent+delivered": texts["delivered"],
                "undelivered": texts["undelivered"],
                "failed": refused_sms + texts["failed"],
            },
            "push": {
                "sent+delivered": len(fcm.messages()),
                "failed": fcm.send_requests - len(fcm.messages()),
                "undelivered": 0,
            },
            "email": {"sent+delivered": len(mail.messages()), "failed": 0, "undelivered": 0},
        }
        assert seen == {
            "sms": {"sent+delivered": 1, "undelivered": 1, "failed": 3},
            "push": {"sent+delivered": 4, "failed": 1, "undelivered": 0},
            "email": {"sent+delivered": 6, "failed": 0, "undelivered": 0},
        }
        suppressed = {"sms": 1, "push": 1, "email": 0}  # S-5 has no phone, S-4 no token
        assert set(stats["channels"]) == {"sms", "push", "email"}
        for channel, counts in stats["channels"].items():
            c = counts["counts"]
            got = {
                "sent+delivered": c["sent"] + c["delivered"],
                "failed": c["failed"],
                "undelivered": c["undelivered"],
            }
            assert got == seen[channel], channel
            assert c["suppressed"] == suppressed[channel], channel
            assert counts["total"] == len(customers), channel
            done = got["sent+delivered"] + got["failed"] + got["undelivered"]
            assert counts["delivery_rate"] == got["sent+delivered"] / done
            # Prometheus counts every acceptance as "sent", whatever a receipt said later
            accepted = (
                got["sent+delivered"]
                + got["undelivered"]
                + (texts["failed"] if channel == "sms" else 0)
            )
            assert (
                _metric(text, "notifier_notifications_total", channel=channel, status="sent")
                == accepted
            ), channel
            assert (
                _metric(text, "notifier_notifications_total", channel=channel, status="failed")
                == c["failed"]
            ), channel
        assert stats["total"]["total"] == 3 * len(customers)

        providers = service.metrics.providers
        for channel, counts in stats["channels"].items():
            groups = [g for g in stats["groups"] if g["channel"] == channel]
            assert {(g["provider"], g["template"], g["state"]) for g in groups} == {
                (providers[channel], "shipped", "shipped")
            }
            summed = Counter[str]()
            for g in groups:
                summed.update(g["counts"])
            assert dict(summed) == counts["counts"], channel

        response = await client.get("/v1/stats/delivery", params={"channel": "sms"})
        only = response.json()
        assert list(only["channels"]) == ["sms"]
        assert {g["channel"] for g in only["groups"]} == {"sms"}
        assert only["total"]["counts"] == stats["channels"]["sms"]["counts"]

        for bad in ("bogus", "0", "-1h", "401d"):
            response = await client.get("/v1/stats/delivery", params={"window": bad})
            assert response.status_code == 422, bad
            [error] = response.json()["detail"]
            assert error["loc"] == ["query", "window"], error
            assert f"window {bad!r}" in error["msg"], error


# 6. An ops alert when a channel's delivery rate drops, at most once per window


async def test_a_falling_sms_delivery_rate_raises_one_ops_alert_per_window(
    nats: NatsServer,
    mail: MailCatcher,
    twilio: TwilioFake,
    tmp_path: Path,
    database_url: str,
) -> None:
    ops = WebhookReceiver()  # ops alerts are plain JSON posts, not signed
    await ops.start()
    numbers = ["+14155550601", "+14155550602", "+14155550603"]
    twilio.invalid_numbers.update(numbers)
    settings = channel_settings(
        nats.url,
        database_url,
        mail.port,
        twilio=twilio,
        rules_file=_rules(tmp_path, SIMPLE_RULES),
        alert_min_samples=3,
        alert_delivery_rate=0.999,
        alert_webhook_url=ops.url("/ops"),
        alert_email="ops@tea.example.com",
    )
    try:
        async with running(settings) as (service, client):
            await service.alerter.stop()  # only this test's calls check
            orders = [f"A-{i}" for i in range(len(numbers))]
            events = [
                event(o, "shipped", 0, email=None, phone=n)
                for o, n in zip(orders, numbers, strict=True)
            ]
            await publish(nats.url, *events[:2])
            for o in orders[:2]:
                await _wait_status(client, o, "sms", "failed")
            assert await service.alerter.check_once() == []  # 2 samples are too few

            await publish(nats.url, events[2])
            await _wait_status(client, orders[2], "sms", "failed")
            raised = await service.alerter.check_once()
            assert [(a.channel, a.rate, a.finished) for a in raised] == [("sms", 0.0, 3)]
            got = await ops.wait_for(1)
            assert got[0].path == "/ops" and got[0].status == 200
            assert got[0].json["channel"] == "sms" and got[0].json["finished"] == 3
            assert got[0].json["subject"] == raised[0].subject
            assert "sms delivery rate" in raised[0].subject
            alerts = await mail.wait_for(1)
            assert alerts[0].rcpt_tos == ["ops@tea.example.com"]
            assert alerts[0].subject == raised[0].subject

            assert await service.alerter.check_once() == []  # the same window: once
            assert len(ops.deliveries()) == 1 and len(mail.messages()) == 1
            text = await _metrics(client)
            assert _metric(text, "notifier_ops_alerts_total", kind="delivery_rate") == 1
            assert _metric(text, "notifier_delivery_rate", channel="sms") == 0.0
    finally:
        await ops.stop()
