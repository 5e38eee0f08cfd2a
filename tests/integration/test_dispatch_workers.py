"""``notifier run --workers 2``: ingest and the API in one process, sends in two others.

Every order's steps are published at once, so its notifications wait in each channel's
queue together and the two workers take them concurrently: only the ledger's claim,
which holds a notification while an earlier one of its order on its channel is
unsettled, keeps "shipped" from overtaking "confirmed" across processes."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest

from notifier.devtools.fcmfake import FcmFake
from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer, free_port
from tests.integration.helpers import event, publish, stale_rows
from tests.integration.test_crash import _env
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

ORDERS = 30
STEPS = ["placed", "shipped", "out_for_delivery", "delivered"]
#: by email (out_for_delivery falls back: push first, and every customer has a token)
SUBJECTS = [
    "Your order {} is confirmed",
    "Your order {} has shipped",
    "Your order {} has been delivered",
]
#: the templates of those emails
EMAILED = ["order_confirmed", "shipped", "delivered"]


def _workers_env(
    nats_url: str, database_url: str, smtp_port: int, fcm: FcmFake, tmp: Path
) -> dict[str, str]:
    return _env(
        nats_url,
        database_url,
        smtp_port,
        NOTIFIER_HTTP_PORT=str(free_ports(3)),
        NOTIFIER_FCM_CREDENTIALS_FILE=str(tmp / "fcm-credentials.json"),
        NOTIFIER_FCM_API_BASE=fcm.base_url,
        NOTIFIER_DISPATCH_BATCH_SIZE="3",
        NOTIFIER_DISPATCH_LEASE_S="10",
        NOTIFIER_PUSH_RATE_PER_S="0",
    )


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_dispatch_workers_send_everything_once_in_order(
    nats: NatsServer, mail: MailCatcher, fcm: FcmFake, database_url: str, tmp_path: Path
) -> None:
    env = _workers_env(nats.url, database_url, mail.port, fcm, tmp_path)
    port = int(env["NOTIFIER_HTTP_PORT"])
    fcm.latency_s = 0.01  # sends overlap, so both workers hold messages of one order
    log = tmp_path / "service.log"
    owner = start(env, log, "--workers", "2")
    try:

        async def all_ready() -> bool:
            found = await readiness(port)
            return found is not None and found["checks"].get("dispatch_workers") == "ok"

        await wait_until(all_ready, timeout=60)
        workers = children(owner.pid)
        assert len(workers) == 2
        worker_ready = await readiness(port + 1)
        await publish(
            nats.url,
            *[
                event(f"W-{i}", state, n, push_tokens=[f"tok-{i}"])
                for i in range(ORDERS)
                for n, state in enumerate(STEPS)
            ],
        )
        # an order's steps arrive together: those a later step makes stale are
        # suppressed, not sent (test_timing.py); every message is one or the other

        async def accounted() -> bool:
            stale = await stale_rows(database_url)
            emails = sum(1 for _o, channel, t, _s in stale if channel == "email" and t in EMAILED)
            pushes = sum(1 for _o, channel, _t, _s in stale if channel == "push")
            return len(mail.messages()) + emails >= ORDERS * len(SUBJECTS) and len(
                fcm.messages()
            ) + pushes >= ORDERS * len(STEPS)

        await wait_until(accounted, timeout=120, interval=0.5)
        await asyncio.sleep(2)  # room for a late repeat to show up
        stale = await stale_rows(database_url)
        # the providers' sends (each order's in-app items are sent too, with no provider)
        sent_by = [
            await sample_sum(p, "notifier_notifications_total", status="sent", provider="smtp")
            + await sample_sum(p, "notifier_notifications_total", status="sent", provider="fcm")
            for p in (port + 1, port + 2)
        ]
        sent_by_owner = await sample_sum(port, "notifier_notifications_total", status="sent")
        running = await sample_sum(port, "notifier_dispatch_workers_running")
        assert await asyncio.to_thread(stop, owner) == 0, log.read_text()[-3000:]
        await wait_until(lambda: not any(alive(pid) for pid in workers), timeout=30)
    finally:
        if owner.poll() is None:
            owner.kill()
    assert running == 2
    assert worker_ready is not None
    assert worker_ready["checks"] == {"nats": "ok", "database": "ok"}
    assert sent_by_owner == 0, "the ingest process sent"
    assert all(n > 0 for n in sent_by), f"one worker did all the sends: {sent_by}"
    stale_emails = {(o, t) for o, channel, t, _s in stale if channel == "email" and t in EMAILED}
    stale_pushes = {(o, state) for o, channel, _t, state in stale if channel == "push"}
    assert sum(sent_by) == ORDERS * (len(SUBJECTS) + len(STEPS)) - len(stale_emails) - len(
        stale_pushes
    )
    emails = Counter(m.message_id for m in mail.messages())
    pushes = Counter(p.collapse_key for p in fcm.messages())
    assert max(emails.values()) == max(pushes.values()) == 1, "something was sent twice"
    by_order: dict[str, list[str]] = defaultdict(list)
    for m in mail.messages():
        by_order[m.subject.split()[2]].append(m.subject)
    for p in fcm.messages():
        by_order[p.data["order_id"]].append(p.data["state"])
    for i in range(ORDERS):
        oid = f"W-{i}"
        emailed = [s for s in by_order[oid] if s.startswith("Your order")]
        pushed = [s for s in by_order[oid] if not s.startswith("Your order")]
        expected = [
            s.format(oid)
            for s, t in zip(SUBJECTS, EMAILED, strict=True)
            if (oid, t) not in stale_emails
        ]
        assert emailed == expected, f"{oid} by email: {emailed}"
        assert pushed == [s for s in STEPS if (oid, s) not in stale_pushes], f"{oid}: {pushed}"
        assert emailed[-1] == SUBJECTS[-1].format(oid) and pushed[-1] == STEPS[-1]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_ingest_and_dispatch_roles_run_as_separate_deployments(
    nats: NatsServer, mail: MailCatcher, database_url: str, tmp_path: Path
) -> None:
    # two ports the kernel hands out, not a probed neighbour (once in CI another
    # connection took the port after the free one between the probe and the bind)
    ports = (free_port(), free_port())
    env = _env(nats.url, database_url, mail.port)
    log = tmp_path / "service.log"
    ingest = start(env | {"NOTIFIER_HTTP_PORT": str(ports[0])}, log, "--role", "ingest")
    dispatch = start(env | {"NOTIFIER_HTTP_PORT": str(ports[1])}, log, "--role", "dispatch")
    try:
        for port in ports:
            await wait_until(lambda p=port: _ok(p), timeout=60)
        await publish(nats.url, *[event(f"S-{i}", "placed", 0) for i in range(10)])
        await wait_until(lambda: len(mail.messages()) >= 10, timeout=60)
        sent_by_ingest = await sample_sum(ports[0], "notifier_notifications_total", status="sent")
        sent_by_dispatch = await sample_sum(
            ports[1], "notifier_notifications_total", status="sent", provider="smtp"
        )
        async with httpx.AsyncClient() as client:
            api = await client.get(f"http://127.0.0.1:{ports[0]}/v1/orders/S-0")
            not_on_dispatch = await client.get(f"http://127.0.0.1:{ports[1]}/v1/orders/S-0")
    finally:
        codes = [await asyncio.to_thread(stop, p) for p in (ingest, dispatch)]
    assert codes == [0, 0], log.read_text()[-3000:]
    assert (sent_by_ingest, sent_by_dispatch) == (0, 10)
    assert api.status_code == 200
    assert not_on_dispatch.status_code == 404
    assert len({m.message_id for m in mail.messages()}) == len(mail.messages()) == 10


async def _ok(port: int) -> bool:
    found = await readiness(port)
    return found is not None and found["status"] == "ok"
