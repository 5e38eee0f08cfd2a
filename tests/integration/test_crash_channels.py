"""SIGKILL the service while it sends email, SMS and push, restart it: every notification
arrives, and a repeat is possible only for a send the provider accepted in the instant
before the kill (at most one per send in flight, with the same provider identity)."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import pytest

from notifier.devtools.fcmfake import FcmFake
from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.devtools.twiliofake import TwilioFake
from tests.integration.helpers import event, publish
from tests.integration.test_crash import _env, _start
from tests.support import wait_until

pytestmark = pytest.mark.slow

ORDERS = 60
IN_FLIGHT = 2  # sends in flight per channel: the most a SIGKILL can repeat per channel


def _phone(i: int) -> str:
    return f"+1415555{i:04d}"


async def _publish_slowly(url: str) -> None:
    for start in range(0, ORDERS, 10):
        await publish(
            url,
            *[
                event(f"X-{i}", "shipped", 0, phone=_phone(i), push_tokens=[f"tok-{i}"])
                for i in range(start, start + 10)
            ],
        )
        await asyncio.sleep(0.3)


async def test_a_kill_while_sending_on_every_channel_loses_nothing(
    nats: NatsServer,
    mail: MailCatcher,
    twilio: TwilioFake,
    fcm: FcmFake,
    database_url: str,
    tmp_path: Path,
) -> None:
    env = _env(
        nats.url,
        database_url,
        mail.port,
        NOTIFIER_SMTP_POOL_SIZE=str(IN_FLIGHT),
        NOTIFIER_TWILIO_ACCOUNT_SID=twilio.account_sid,
        NOTIFIER_TWILIO_AUTH_TOKEN=twilio.auth_token,
        NOTIFIER_TWILIO_FROM="+15005550006",
        NOTIFIER_TWILIO_API_BASE=twilio.base_url,
        NOTIFIER_SMS_CONCURRENCY=str(IN_FLIGHT),
        NOTIFIER_SMS_RATE_PER_S="0",
        NOTIFIER_FCM_CREDENTIALS_FILE=str(tmp_path / "fcm-credentials.json"),
        NOTIFIER_FCM_API_BASE=fcm.base_url,
        NOTIFIER_PUSH_CONCURRENCY=str(IN_FLIGHT),
        NOTIFIER_DISPATCH_BATCH_SIZE="5",
    )
    # slow providers, so the kill lands while sends are in flight on every channel
    twilio.latency_s = fcm.latency_s = 0.02
    log = tmp_path / "service.log"
    publisher = asyncio.create_task(_publish_slowly(nats.url))
    first = _start(env, log)
    try:
        await wait_until(
            lambda: len(twilio.messages()) >= 10 and len(fcm.messages()) >= 10, timeout=30
        )
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 40)
        before = (len(mail.messages()), len(twilio.messages()), len(fcm.messages()))
        second = _start(env, log)
        try:
            await publisher
            await wait_until(
                lambda: (
                    min(len(mail.messages()), len(twilio.messages()), len(fcm.messages())) >= ORDERS
                ),
                timeout=90,
            )
            await asyncio.sleep(3)  # room for a late repeat to show up
        finally:
            second.terminate()
            await asyncio.to_thread(second.wait, 40)
    finally:
        if first.poll() is None:
            first.kill()
        publisher.cancel()
    assert before < (ORDERS, ORDERS, ORDERS), "the kill happened after everything was sent"
    emails = Counter(m.message_id for m in mail.messages())
    sms = Counter(m.to for m in twilio.messages())
    pushes = Counter(p.collapse_key for p in fcm.messages())
    assert set(sms) == {_phone(i) for i in range(ORDERS)}, "an SMS was lost"
    assert {p.token for p in fcm.messages()} == {f"tok-{i}" for i in range(ORDERS)}
    assert len(emails) == len(pushes) == ORDERS, "an email or a push was lost"
    tail = log.read_text()[-3000:]
    for name, counts in (("email", emails), ("sms", sms), ("push", pushes)):
        repeats = sum(n - 1 for n in counts.values())
        assert repeats <= IN_FLIGHT, f"{name}: {repeats} repeats\n{tail}"
