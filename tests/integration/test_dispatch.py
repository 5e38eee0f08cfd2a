"""Dispatch end to end through the running service: per-channel queues, retries and
Retry-After, permanent failures, dead letters and ``notifier dlq replay``, the circuit
breaker, idempotent sends and the token bucket, against the Twilio fake and the mail
catcher."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats as nats_client
from httpx import AsyncClient
from nats.js import JetStreamContext
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.delivery import deadletters
from notifier.delivery.deadletters import NotificationDeadLetter, notification_dead_letters
from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.devtools.twiliofake import TwilioFake
from notifier.devtools.twiliowire import Failure
from notifier.store.tables import notifications
from notifier.streams import DEADLETTER_STREAM, NOTIFY_STREAM
from tests.integration.helpers import channel_settings, event, order, publish, running
from tests.support import free_port, wait_until

CLI_TIMEOUT_S = 60


def _phone(i: int) -> str:
    return f"+1415555{i:04d}"


def _sms_event(order_id: str, phone: str) -> dict[str, Any]:
    """A ``shipped`` event whose only notification is one SMS (no email, no push)."""
    return event(order_id, "shipped", 0, email=None, phone=phone)


async def _notification(client: AsyncClient, order_id: str, channel: str) -> dict[str, Any]:
    """The order's one notification on ``channel``, as the API shows it."""
    view = await order(client, order_id)
    found = [n for n in (view or {}).get("notifications", []) if n["channel"] == channel]
    assert len(found) <= 1, found
    return found[0] if found else {}


async def _status(client: AsyncClient, order_id: str, channel: str) -> str | None:
    status: str | None = (await _notification(client, order_id, channel)).get("status")
    return status


async def _wait_status(
    client: AsyncClient, order_id: str, channel: str, wanted: str
) -> dict[str, Any]:
    async def reached() -> bool:
        return await _status(client, order_id, channel) == wanted

    reached.__qualname__ = f"{order_id} {channel} is {wanted}"
    await wait_until(reached, timeout=15)
    return await _notification(client, order_id, channel)


@contextlib.asynccontextmanager
async def _jetstream(url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats_client.connect(url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def _letters(url: str, **match: Any) -> list[NotificationDeadLetter]:
    async with _jetstream(url) as js:
        return await notification_dead_letters(js, **match)


async def _pending_for_outbox(engine: AsyncEngine) -> int:
    """Ledger rows still waiting to be published as dispatch messages."""
    async with engine.connect() as conn:
        count: int = (
            await conn.execute(
                select(func.count())
                .select_from(notifications)
                .where(notifications.c.dispatch_pending.is_(True))
            )
        ).scalar_one()
    return count


async def _exhausted(
    client: AsyncClient, nats_url: str, orders: list[str], *, attempts: int
) -> dict[str, str]:
    """Wait until each order's SMS failed after ``attempts`` and check its dead letter;
    order id → notification id."""
    rows = {o: await _wait_status(client, o, "sms", "failed") for o in orders}
    assert all(row["attempts"] == attempts for row in rows.values()), rows
    ids = {o: str(row["id"]) for o, row in rows.items()}
    letters = await _letters(nats_url, channel="sms")
    assert sorted(x.notification_id for x in letters) == sorted(ids.values())
    assert {x.reason for x in letters} == {deadletters.EXHAUSTED}
    assert all(f"after {attempts} attempts" in x.error for x in letters), letters
    return ids


@dataclass(frozen=True, slots=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    def lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.strip()]


async def _dlq_replay(*args: str, nats_url: str, database_url: str, cwd: Path) -> CliResult:
    """``notifier dlq replay ARGS`` as an operator runs it, in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(NOTIFIER_NATS_URL=nats_url, NOTIFIER_DATABASE_URL=database_url, COLUMNS="200")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "notifier", "dlq", "replay", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )

    done = await asyncio.to_thread(run)
    return CliResult(done.returncode, done.stdout, done.stderr)


async def test_an_smtp_outage_delays_only_email(
    nats: NatsServer, twilio: TwilioFake, database_url: str
) -> None:
    port = free_port()  # nothing listens here until the catcher starts
    settings = channel_settings(nats.url, database_url, port, twilio=twilio, smtp_timeout_s=1.0)
    async with running(settings) as (_service, client):
        await publish(nats.url, event("O-1", "shipped", 0, phone=_phone(1)))
        sms = await twilio.wait_for(1, timeout=15)
        assert sms[0].to == _phone(1)

        async def email_retrying() -> bool:
            email = await _notification(client, "O-1", "email")
            return email.get("attempts", 0) >= 2 and bool(email.get("last_error"))

        await wait_until(email_retrying, timeout=15)
        assert await _status(client, "O-1", "email") in {"queued", "sending"}
        assert await _status(client, "O-1", "sms") == "sent"

        catcher = MailCatcher()
        await catcher.start(port=port)
        try:
            await catcher.wait_for(1, timeout=15)
            await _wait_status(client, "O-1", "email", "sent")
            assert [m.rcpt_tos for m in catcher.messages()] == [["ada@example.com"]]
        finally:
            await catcher.stop()
        assert len(twilio.messages()) == 1
        assert twilio.request_count == 1


async def test_twilio_429_retry_after_is_honoured(
    nats: NatsServer, twilio: TwilioFake, database_url: str
) -> None:
    retry_after = 2.0
    twilio.fail_next(1, 429, retry_after=retry_after)
    settings = channel_settings(nats.url, database_url, None, twilio=twilio)
    async with running(settings) as (_service, client):
        await publish(nats.url, _sms_event("RA-1", _phone(1)))
        await wait_until(lambda: twilio.request_count >= 1, timeout=15, interval=0.01)
        # seen no earlier than the first request came in, so the gap measured from here
        # is never longer than the real one
        refused_by = datetime.now(UTC)
        sent = await twilio.wait_for(1, timeout=15)
        accepted = datetime.fromisoformat(sent[0].received_at)
        assert (accepted - refused_by).total_seconds() >= retry_after - 0.1
        row = await _wait_status(client, "RA-1", "sms", "sent")
        assert row["attempts"] == 2
        assert twilio.request_count == 2
        assert len(twilio.messages()) == 1


async def test_permanent_refusals_are_not_retried_and_are_dead_lettered(
    nats: NatsServer, twilio: TwilioFake, database_url: str
) -> None:
    # Twilio code → the dead letter's reason: 21211 (not a valid 'To') means the number
    # itself is dead; 21612 (no route to it) is a plain permanent refusal. 21610 (the
    # customer replied STOP) is no failure: suppressed, opted out, never dead-lettered.
    cases = {
        "PF-1": (_phone(1), 21211, deadletters.DEAD_RECIPIENT),
        "PF-2": (_phone(2), 21612, deadletters.PERMANENT),
    }
    twilio.invalid_numbers.add(_phone(1))
    twilio.number_failures[_phone(2)] = Failure(400, 21612, "Cannot route to this number")
    twilio.unsubscribed_numbers.add(_phone(3))
    settings = channel_settings(nats.url, database_url, None, twilio=twilio)
    async with running(settings) as (_service, client):
        await publish(
            nats.url,
            *(_sms_event(o, phone) for o, (phone, _, _) in cases.items()),
            _sms_event("PF-3", _phone(3)),
        )
        rows = {o: await _wait_status(client, o, "sms", "failed") for o in cases}
        for o, (_, code, _) in cases.items():
            assert rows[o]["attempts"] == 1
            assert f"code {code}" in rows[o]["last_error"], rows[o]
        stopped = await _wait_status(client, "PF-3", "sms", "suppressed")
        assert stopped["last_error"] == "recipient replied STOP"
        assert twilio.request_count == len(cases) + 1
        assert twilio.messages() == []

        async with _jetstream(nats.url) as js:
            letters = await notification_dead_letters(js, channel="sms")
            subjects = [(await js.get_msg(DEADLETTER_STREAM, x.seq)).subject for x in letters]
        assert subjects == ["deadletter.notify.sms"] * len(cases)
        by_id = {x.notification_id: x for x in letters}
        assert set(by_id) == {rows[o]["id"] for o in cases}
        for o, (_, code, reason) in cases.items():
            letter = by_id[rows[o]["id"]]
            assert (letter.channel, letter.reason) == ("sms", reason)
            assert f"code {code}" in letter.error
            assert _phone(1) not in letter.error and _phone(2) not in letter.error
        assert twilio.request_count == len(cases) + 1


async def test_exhausted_sms_is_dead_lettered_and_replayed_exactly_once(
    nats: NatsServer, twilio: TwilioFake, database_url: str, tmp_path: Path
) -> None:
    orders = {"EX-1": _phone(1), "EX-2": _phone(2)}
    twilio.down = True
    # the breaker never opens, so every attempt reaches the fake and is counted
    settings = channel_settings(
        nats.url,
        database_url,
        None,
        twilio=twilio,
        dispatch_max_attempts=3,
        breaker_failures=10_000,
    )

    async def cli(*args: str) -> CliResult:
        return await _dlq_replay(*args, nats_url=nats.url, database_url=database_url, cwd=tmp_path)

    async with running(settings) as (service, client):
        await publish(nats.url, *(_sms_event(o, phone) for o, phone in orders.items()))
        ids = await _exhausted(client, nats.url, list(orders), attempts=3)
        assert twilio.request_count == 3 * len(orders)

        no_selector = await cli()
        assert no_selector.code == 2, no_selector
        assert "--id" in no_selector.stderr and "--channel" in no_selector.stderr
        assert no_selector.stdout == ""

        for selector in (["--channel", "sms"], ["--all"]):
            dry = await cli(*selector, "--dry-run")
            assert dry.code == 0, dry
            assert dry.lines()[0] == (
                "dry run, nothing changed: would replay 2 (sms 2); each goes back in the queue "
                "only if its notification is still failed"
            ), dry
            assert sorted(dry.lines()[1:]) == sorted(
                f"would replay {nid} (sms, {deadletters.EXHAUSTED})" for nid in ids.values()
            )
            # the provider's error text can quote a recipient: a dry run leaves it out
            assert "after 3 attempts" not in dry.stdout, dry
            assert not any(phone in dry.stdout for phone in orders.values()), dry
        assert len(await _letters(nats.url, channel="sms")) == len(orders)
        assert [await _status(client, o, "sms") for o in orders] == ["failed", "failed"]

        twilio.down = False
        one = await cli("--id", ids["EX-1"])
        assert one.code == 0, one
        assert one.lines()[0].startswith("replayed 1, not needed 0"), one
        sent = await twilio.wait_for(1, timeout=15)
        assert [m.to for m in sent] == [orders["EX-1"]]
        await _wait_status(client, "EX-1", "sms", "sent")
        assert await _status(client, "EX-2", "sms") == "failed"
        assert [x.notification_id for x in await _letters(nats.url)] == [ids["EX-2"]]

        # two operators at once: the one dead letter left is re-driven once between them
        both = await asyncio.gather(cli("--channel", "sms"), cli("--channel", "sms"))
        assert [r.code for r in both] == [0, 0], both
        assert sorted(r.lines()[0].split(",")[0] for r in both) == ["replayed 0", "replayed 1"]
        await twilio.wait_for(2, timeout=15)
        row = await _wait_status(client, "EX-2", "sms", "sent")
        assert row["attempts"] == 1
        assert await _letters(nats.url) == []

        again = await cli("--channel", "sms")
        assert again.code == 0, again
        assert again.lines()[0].startswith("replayed 0, not needed 0 ")
        gone = await cli("--id", ids["EX-1"])
        assert gone.code == 0, gone
        assert "not found 1" in gone.lines()[0]
        assert f"no dead letter for {ids['EX-1']}" in gone.stderr

        # nothing was put back in the queue, so nothing more can go out
        assert await _pending_for_outbox(service.engine) == 0
        assert [await _status(client, o, "sms") for o in orders] == ["sent", "sent"]
        assert sorted(m.to for m in twilio.messages()) == sorted(orders.values())
        assert twilio.request_count == 3 * len(orders) + len(orders)


async def test_a_replay_that_fails_again_is_dead_lettered_again(
    nats: NatsServer, twilio: TwilioFake, database_url: str
) -> None:
    twilio.down = True
    settings = channel_settings(
        nats.url,
        database_url,
        None,
        twilio=twilio,
        dispatch_max_attempts=2,
        breaker_failures=10_000,
    )
    async with running(settings) as (service, client):
        await publish(nats.url, _sms_event("RF-1", _phone(1)))
        nid = (await _wait_status(client, "RF-1", "sms", "failed"))["id"]
        async with _jetstream(nats.url) as js:
            first = await notification_dead_letters(js, ids=[nid])
            assert len(first) == 1
            # replayed too early: the provider is still down
            report = await deadletters.replay(js, service.engine, first)
        assert report.replayed == [nid]
        await wait_until(lambda: twilio.request_count >= 4, timeout=15)
        await _wait_status(client, "RF-1", "sms", "failed")

        second = await _letters(nats.url, ids=[nid])
        assert [x.reason for x in second] == [deadletters.EXHAUSTED], (
            "a notification that failed again after a replay has no dead letter to replay"
        )
        twilio.down = False
        async with _jetstream(nats.url) as js:
            assert (await deadletters.replay(js, service.engine, second)).replayed == [nid]
            # the same letters again, as a concurrent replay that read them first would
            late = await deadletters.replay(js, service.engine, second)
        assert (late.replayed, late.stale) == ([], [nid])
        await twilio.wait_for(1, timeout=15)
        await _wait_status(client, "RF-1", "sms", "sent")
        assert await _pending_for_outbox(service.engine) == 0
        assert twilio.request_count == 5
        assert len(twilio.messages()) == 1


async def test_the_breaker_holds_sends_back_while_the_provider_is_down(
    nats: NatsServer, twilio: TwilioFake, database_url: str
) -> None:
    orders = {f"BR-{i}": _phone(i) for i in range(12)}
    twilio.down = True
    settings = channel_settings(
        nats.url,
        database_url,
        None,
        twilio=twilio,
        breaker_failures=2,
        breaker_open_s=2.0,
        sms_concurrency=2,
    )
    async with running(settings) as (_service, client):
        await publish(nats.url, *(_sms_event(o, phone) for o, phone in orders.items()))

        async def all_queued() -> bool:
            found = [await _notification(client, o, "sms") for o in orders]
            return all(n.get("status") in {"queued", "sending"} for n in found)

        await wait_until(all_queued, timeout=15)
        await wait_until(lambda: twilio.request_count >= 2, timeout=15)
        opened_at = twilio.request_count
        # Two open periods. Without a breaker each of the 12 messages would be retried
        # every 0.1-1 s: dozens of requests. With it, one trial per period at most.
        await asyncio.sleep(4.0)
        during_outage = twilio.request_count - opened_at
        assert during_outage <= 4, f"{during_outage} requests while the breaker was open"
        for o in orders:
            assert (await _notification(client, o, "sms"))["status"] in {"queued", "sending"}

        twilio.down = False
        await twilio.wait_for(len(orders), timeout=30)
        for o in orders:
            await _wait_status(client, o, "sms", "sent")
        assert sorted(m.to for m in twilio.messages()) == sorted(orders.values())


async def test_a_second_dispatch_message_for_a_sent_notification_sends_nothing(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    settings = channel_settings(nats.url, database_url, mail.port)
    async with running(settings) as (_service, client):
        await publish(nats.url, event("ID-1", "placed", 0))
        await mail.wait_for(1, timeout=15)
        row = await _wait_status(client, "ID-1", "email", "sent")

        async with _jetstream(nats.url) as js:
            ack = await js.publish(
                "notify.email",
                json.dumps({"id": row["id"]}).encode(),
                headers={"Nats-Msg-Id": f"by-hand.{row['id']}"},
            )

            async def taken() -> bool:
                info = await js.consumer_info(NOTIFY_STREAM, "dispatch-email")
                return bool(
                    info.ack_floor.stream_seq >= ack.seq
                    and info.num_pending == 0
                    and info.num_ack_pending == 0
                )

            await wait_until(taken, timeout=15)
        assert len(mail.messages()) == 1
        again = await _notification(client, "ID-1", "email")
        assert (again["status"], again["attempts"]) == ("sent", 1)


async def test_the_token_bucket_spreads_sms_at_its_rate(
    nats: NatsServer, twilio: TwilioFake, database_url: str
) -> None:
    rate, count = 5.0, 10
    orders = {f"TB-{i}": _phone(i) for i in range(count)}
    settings = channel_settings(nats.url, database_url, None, twilio=twilio, sms_rate_per_s=rate)
    async with running(settings) as (_service, client):
        await publish(nats.url, *(_sms_event(o, phone) for o, phone in orders.items()))
        sent = await twilio.wait_for(count, timeout=30)
        for o in orders:
            await _wait_status(client, o, "sms", "sent")
    assert sorted(m.to for m in sent) == sorted(orders.values())
    times = sorted(datetime.fromisoformat(m.received_at) for m in sent)
    # A full bucket holds `rate` tokens: the first 5 go at once, the other 5 need a
    # second's refill. Lower bound only, with room for the requests' own latency.
    burst = int(rate)
    assert (times[-1] - times[0]).total_seconds() >= (count - burst) / rate - 0.2
