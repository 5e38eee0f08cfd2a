"""SIGKILL one process of ``notifier run --workers 2``: a dispatch worker mid-send, or
the ingest process that owns the workers mid-batch. Nothing is lost; a repeat is
possible only for a send the provider accepted in the instant before the kill (at most
one per send in flight in the killed worker); the owner starts a killed worker again,
and the workers of a killed owner stop by themselves."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from notifier.devtools.fcmfake import FcmFake
from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from tests.integration.helpers import event, publish, stale_rows
from tests.integration.test_crash import _consumer_progress, _env
from tests.integration.workers import (
    alive,
    children,
    free_ports,
    readiness,
    sample_sum,
    start,
    stop,
)
from tests.support import wait_until

pytestmark = pytest.mark.slow

#: sends in flight per channel in one worker: the most its SIGKILL can repeat per channel
IN_FLIGHT = 2


async def _all_ready(port: int) -> bool:
    found = await readiness(port)
    return found is not None and found["checks"].get("dispatch_workers") == "ok"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_dispatch_worker_killed_mid_send_is_restarted_and_loses_nothing(
    nats: NatsServer, mail: MailCatcher, fcm: FcmFake, database_url: str, tmp_path: Path
) -> None:
    orders = 60
    env = _env(
        nats.url,
        database_url,
        mail.port,
        NOTIFIER_HTTP_PORT=str(free_ports(3)),
        NOTIFIER_SMTP_POOL_SIZE=str(IN_FLIGHT),
        NOTIFIER_FCM_CREDENTIALS_FILE=str(tmp_path / "fcm-credentials.json"),
        NOTIFIER_FCM_API_BASE=fcm.base_url,
        NOTIFIER_PUSH_CONCURRENCY=str(IN_FLIGHT),
        NOTIFIER_PUSH_RATE_PER_S="0",
        NOTIFIER_DISPATCH_BATCH_SIZE="5",
    )
    port = int(env["NOTIFIER_HTTP_PORT"])
    fcm.latency_s = 0.03  # slow pushes, so the kill lands while they are in flight
    log = tmp_path / "service.log"
    owner = start(env, log, "--workers", "2")
    try:
        await wait_until(lambda: _all_ready(port), timeout=60)
        workers = children(owner.pid)

        async def publish_slowly() -> None:
            for first in range(0, orders, 10):
                await publish(
                    nats.url,
                    *[
                        event(f"D-{i}", "shipped", 0, push_tokens=[f"tok-{i}"])
                        for i in range(first, first + 10)
                    ],
                )
                await asyncio.sleep(0.3)

        publisher = asyncio.create_task(publish_slowly())
        await wait_until(lambda: len(fcm.messages()) >= 10, timeout=60)
        victim = min(workers)
        signal_sent_at = (len(mail.messages()), len(fcm.messages()))
        os.kill(victim, signal.SIGKILL)  # ours: a child of the owner this test started
        await wait_until(lambda: not alive(victim), timeout=10)
        # the owner starts another in its place, which says it is ready
        await wait_until(lambda: len(children(owner.pid) - workers) == 1, timeout=30)
        await wait_until(lambda: _all_ready(port), timeout=60)
        await publisher
        await wait_until(
            lambda: len(mail.messages()) >= orders and len(fcm.messages()) >= orders, timeout=90
        )
        await asyncio.sleep(3)  # room for a late repeat to show up
        restarts = await sample_sum(port, "notifier_dispatch_worker_restarts_total")
        assert await asyncio.to_thread(stop, owner) == 0, log.read_text()[-3000:]
    finally:
        if owner.poll() is None:
            owner.kill()
    assert signal_sent_at < (orders, orders), "the kill came after everything was sent"
    assert restarts == 1
    assert f"(pid {victim}) exited with -9; starting it again" in log.read_text()
    emails = Counter(m.message_id for m in mail.messages())
    pushes = Counter(p.collapse_key for p in fcm.messages())
    assert len(emails) == len(pushes) == orders, "a notification was lost"
    for name, counts in (("email", emails), ("push", pushes)):
        repeats = sum(n - 1 for n in counts.values())
        assert repeats <= IN_FLIGHT, f"{name}: {repeats} repeats\n{log.read_text()[-3000:]}"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_the_ingest_process_killed_mid_batch_loses_nothing(
    nats: NatsServer, mail: MailCatcher, database_url: str, tmp_path: Path
) -> None:
    orders = 150
    steps = ["placed", "shipped", "delivered"]
    total = orders * len(steps)
    env = _env(
        nats.url,
        database_url,
        mail.port,
        NOTIFIER_HTTP_PORT=str(free_ports(3)),
        NOTIFIER_INGEST_BATCH_SIZE="10",
    )
    log = tmp_path / "service.log"
    first = start(env, log, "--workers", "2")
    try:
        # the workers consume before the backlog arrives: they are sending at the kill
        await wait_until(lambda: _all_ready(int(env["NOTIFIER_HTTP_PORT"])), timeout=60)
        await publish(
            nats.url, *[event(f"G-{i}", s, n) for n, s in enumerate(steps) for i in range(orders)]
        )

        async def mid_ingest() -> bool:
            delivered, floor = await _consumer_progress(nats.url)
            return delivered > total // 4 and floor < total

        await wait_until(mid_ingest, timeout=60, interval=0.005)
        orphans = children(first.pid)
        sent_before_kill = len(mail.messages())
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 10)
        _delivered, floor = await _consumer_progress(nats.url)
        # its workers see their owner gone and stop by themselves, as on SIGTERM
        await wait_until(lambda: not any(alive(pid) for pid in orphans), timeout=60)
        second = start(env, log, "--workers", "2")
        try:
            # a "shipped" still queued when "delivered" arrived is suppressed as stale

            async def accounted() -> bool:
                stale = await stale_rows(database_url)
                shipped = sum(1 for _o, c, t, _s in stale if c == "email" and t == "shipped")
                return len(mail.messages()) + shipped >= total

            await wait_until(accounted, timeout=120, interval=0.5)
            await asyncio.sleep(3)  # room for a late repeat to show up
            stale_shipped = {
                o
                for o, c, t, _s in await stale_rows(database_url)
                if (c, t) == ("email", "shipped")
            }
        finally:
            assert await asyncio.to_thread(stop, second) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    assert len(orphans) == 2
    assert floor < total, "the kill came after ingest finished"
    assert sent_before_kill > 0, "the workers were not sending yet"
    assert "dispatch worker is gone; stopping" in log.read_text()
    subjects = Counter(m.subject for m in mail.messages())
    for i in range(orders):
        for subject in ("is confirmed", "has shipped", "has been delivered"):
            stale = subject == "has shipped" and f"G-{i}" in stale_shipped
            assert subjects[f"Your order G-{i} {subject}"] == (0 if stale else 1), (
                f"G-{i} {subject}"
            )
    # the workers stopped gracefully, recording every send they had made: no repeat
    assert len(mail.messages()) == total - len(stale_shipped)
