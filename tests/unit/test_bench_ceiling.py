"""The client ceiling's parts that need no server: the core layout, replaying what the
fakes caught as the messages sent, sending with bounded concurrency, the shares."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from notifier.bench.clients import compare, send_all
from notifier.bench.cores import CoreLayout
from notifier.bench.fakehost import RawMailSink, outbound_email, outbound_push, outbound_sms
from notifier.channels import email_mime
from notifier.channels.base import ChannelAdapter, OutboundMessage
from notifier.channels.email import EmailChannel
from notifier.channels.null import null_channel
from notifier.config import SmtpTls
from notifier.devtools.fcmwire import received_push
from notifier.devtools.mailcatcher import CaughtMessage
from notifier.devtools.twiliowire import FakeMessage


@pytest.mark.parametrize(
    ("cores", "service", "load", "pinned"),
    [
        (range(1), {0}, {0}, False),
        (range(2), {0, 1}, {0, 1}, False),
        (range(3), {0, 1, 2}, {0, 1, 2}, False),
        (range(4), {0, 1}, {2, 3}, True),
        (range(8), set(range(6)), {6, 7}, True),
        (range(16), set(range(12)), set(range(12, 16)), True),
        ((3, 5, 9, 11, 12), {3, 5, 9}, {11, 12}, True),
    ],
)
def test_the_sides_are_pinned_apart_only_from_four_cores(
    cores: range | tuple[int, ...], service: set[int], load: set[int], pinned: bool
) -> None:
    layout = CoreLayout.plan(frozenset(cores))
    assert (set(layout.service), set(layout.load), layout.pinned) == (service, load, pinned)
    described = layout.describe()
    assert described["service_cores"] == len(service)
    assert ("not pinned" in described["note"]) is not pinned


def test_a_caught_email_replays_as_the_message_that_was_sent() -> None:
    sent = OutboundMessage(
        notification_id="01JN-abc_42",
        channel="email",
        to="ada@bench.example.com",
        text="Your order shipped.\n",
        subject="Order B-1 shipped",
        html="<p>Your order shipped.</p>\n",
        locale="fr-CA",
    )
    mime, _ = email_mime.compose(
        sent,
        from_addr="Orders <orders@bench.example.com>",
        message_id=email_mime.message_id(sent.notification_id, "bench.example.com"),
    )
    caught = CaughtMessage.parse(
        mime.as_bytes(), mail_from="orders@bench.example.com", rcpt_tos=[sent.to]
    )
    assert outbound_email(caught) == sent


def test_an_accepted_sms_and_push_replay_with_their_notification_ids() -> None:
    sms = FakeMessage(
        sid="SM1",
        to="+14155550100",
        from_="+15005550006",
        messaging_service_sid=None,
        body="Shipped",
        status_callback="http://127.0.0.1:1/v1/receipts/twilio?n=n-7",
        num_segments=1,
        auth_user="AC",
        form={},
        received_at="2026-11-30T00:00:00+00:00",
        status="sent",
    )
    assert outbound_sms(sms) == OutboundMessage("n-7", "sms", "+14155550100", "Shipped")
    push = received_push(
        "p",
        "m1",
        {
            "token": "tok",
            "notification": {"title": "Shipped", "body": "On its way"},
            "data": {"notification_id": "n-8", "order_id": "B-1", "state": "shipped"},
        },
    )
    assert outbound_push(push) == OutboundMessage(
        "n-8", "push", "tok", "On its way", subject="Shipped", order_id="B-1", state="shipped"
    )


def _email(port: int, pool_size: int = 2) -> EmailChannel:
    return EmailChannel(
        host="127.0.0.1",
        port=port,
        tls=SmtpTls.NONE,
        username=None,
        password=None,
        ca_file=None,
        from_addr="orders@bench.example.com",
        timeout_s=2.0,
        pool_size=pool_size,
    )


async def test_the_bench_mail_sink_gives_back_what_the_email_channel_sent() -> None:
    sink = RawMailSink()
    email = _email(await sink.start())
    await email.start()
    sent = [
        OutboundMessage(
            f"n-{n}", "email", f"c{n}@bench.example.com", "text\n", subject="s", locale="en-US"
        )
        for n in range(3)
    ]
    try:
        receipts = [await email.send(message) for message in sent]
    finally:
        await email.close()
        await sink.stop()
    keys = [r.provider_message_id for r in receipts]
    assert [(c, key) for c, key, _ in sink.received()] == [("email", k) for k in keys]
    assert sink.outbound() == sent
    sink.clear()
    assert sink.received() == []


def _message(n: int, channel: str, subject: str | None = "s") -> OutboundMessage:
    return OutboundMessage(f"n-{n}", channel, f"c{n}@bench.example.com", "text", subject=subject)


async def test_every_message_is_sent_once_and_failures_are_counted_by_code() -> None:
    # the email channel refuses a message without a subject before any connection
    email = _email(port=9)
    await email.start()
    adapters: dict[str, ChannelAdapter] = {"email": email, "push": null_channel("push")}
    messages = {
        "email": [_message(n, "email", subject=None) for n in range(5)],
        "push": [_message(n, "push") for n in range(7)],
    }
    result = await send_all(adapters, messages, {"email": 2, "push": 3})
    await email.close()
    assert result["sends"] == 7 and result["errors"] == 5
    assert result["channels"]["email"]["error_codes"] == {"no-subject": 5}
    assert result["channels"]["push"]["sends"] == 7
    assert result["channels"]["push"]["concurrency"] == 3


def test_the_end_to_end_burst_is_a_share_of_the_ceiling_per_channel_and_in_total() -> None:
    ceiling = {
        "channels": {
            "email": {"sends": 100, "seconds": 0.5, "sends_per_s": 200.0},
            "push": {"sends": 50, "seconds": 0.25, "sends_per_s": 200.0},
        },
        "sends": 150,
        "seconds": 0.5,
        "sends_per_s": 300.0,
    }
    burst = {"events_per_s": 80.0, "seconds": 2.0, "sends": {"email": 100, "push": 50}}
    burst["sends_per_s"] = 75.0
    found = compare(ceiling, burst)
    assert found["ratio"] == pytest.approx(0.25)
    assert found["events_per_s"] == pytest.approx(320.0)
    assert found["channels"]["email"]["ratio"] == pytest.approx(0.25)
    assert found["channels"]["push"]["end_to_end_sends_per_s"] == pytest.approx(25.0)
    assert found["channels"]["push"]["ratio"] == pytest.approx(0.125)
    assert compare(ceiling, {})["ratio"] is None


def test_a_channel_that_finished_early_is_timed_to_its_own_last_send() -> None:
    ceiling = {
        "channels": {
            "email": {"sends": 100, "seconds": 0.5, "sends_per_s": 200.0},
            "push": {"sends": 50, "seconds": 0.25, "sends_per_s": 200.0},
        },
        "sends": 150,
        "seconds": 0.5,
        "sends_per_s": 300.0,
    }
    burst = {
        "events_per_s": 80.0,
        "seconds": 2.0,
        "channel_seconds": {"email": 2.0, "push": 0.5},
        "sends": {"email": 100, "push": 50},
        "sends_per_s": 75.0,
    }
    found = compare(ceiling, burst)
    assert found["channels"]["push"]["end_to_end_sends_per_s"] == pytest.approx(100.0)
    assert found["channels"]["push"]["ratio"] == pytest.approx(0.5)
    assert found["channels"]["email"]["ratio"] == pytest.approx(0.25)
    assert found["ratio"] == pytest.approx(0.25), "the total is over the whole burst"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable cores")
def test_pinning_moves_a_process_and_the_service_side_is_left_after_use() -> None:
    first, second = sorted(os.sched_getaffinity(0))[:2]
    before = os.sched_getaffinity(0)
    layout = CoreLayout(service=frozenset({first}), load=frozenset({second}), pinned=True)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        layout.pin_load(child.pid)
        assert os.sched_getaffinity(child.pid) == {second}
        layout.pin_service(child.pid)
        assert os.sched_getaffinity(child.pid) == {first}
    finally:
        child.kill()
        child.wait()
    with layout.service_side():
        assert os.sched_getaffinity(0) == {first}
    assert os.sched_getaffinity(0) == before
    # a layout that is not pinned touches nothing
    CoreLayout.plan(frozenset({first, second})).pin_service(os.getpid())
    assert os.sched_getaffinity(0) == before
