"""Review findings proven against the running service (real nats-server, SQLite and
PostgreSQL, the mail catcher)."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime, timedelta

import nats as nats_client
from sqlalchemy import select, update

from notifier.delivery.deadletters import notification_dead_letters
from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from notifier.store.tables import notifications
from tests.integration.helpers import event, order, publish, running, settings_for
from tests.support import wait_until

N = notifications.c


async def test_a_publish_lost_in_a_nats_crash_does_not_stall_the_outbox(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    # The relay waits for JetStream's ack of every dispatch message it published. If
    # nats-server dies with the publish unread, that ack never comes: the relay must
    # give up on it and publish again, not wait forever with every pending row behind it.
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings) as (service, client):
        await publish(nats.url, event("OB-1", "placed", 0))
        await mail.wait_for(1, timeout=15)

        async def sent() -> bool:
            view = await order(client, "OB-1")
            notes = (view or {}).get("notifications", [])
            return [n["status"] for n in notes if n["channel"] == "email"] == ["sent"]

        await wait_until(sent, timeout=15)
        os.kill(nats.pid, signal.SIGSTOP)
        try:
            # what `notifier dlq replay` does to a ledger row: queued, to be published again
            async with service.engine.begin() as conn:
                await conn.execute(
                    update(notifications)
                    .where(N.channel == "email")
                    .values(status="queued", dispatch_pending=True, dispatch_gen=N.dispatch_gen + 1)
                )
            service.outbox.wake()
            await asyncio.sleep(1.5)  # the relay wrote the publish to a server that is not reading
        finally:
            nats.kill()  # a crash: what it had not read is gone
        await asyncio.to_thread(nats.start)

        async def published() -> bool:
            async with service.engine.connect() as conn:
                pending = (
                    (await conn.execute(select(N.dispatch_pending).where(N.channel == "email")))
                    .scalars()
                    .all()
                )
            return pending == [False]

        try:
            await wait_until(published, timeout=30)
            await mail.wait_for(2, timeout=15)
        except TimeoutError:
            task = service.outbox._task
            if task is not None:
                task.cancel()  # the stuck relay would hang the service's stop
            raise


async def test_a_send_interrupted_by_a_crash_after_erasure_is_suppressed_not_failed(
    nats: NatsServer, mail: MailCatcher, database_url: str
) -> None:
    # Erasure leaves a notification that is being sent alone (it is in the provider's
    # hands) but clears its recipient. If the process dies before recording the send,
    # the lease runs out and the row is claimed again: with no recipient left it must
    # end suppressed ("customer erased"), not be tried on an empty address, fail and
    # be dead-lettered (and counted against the delivery rate).
    settings = settings_for(nats.url, database_url, mail.port)
    async with running(settings) as (service, client):
        await publish(nats.url, event("ER-1", "placed", 0))
        await mail.wait_for(1, timeout=15)

        async def email_status() -> str:
            view = await order(client, "ER-1")
            notes = (view or {}).get("notifications", [])
            return next(str(n["status"]) for n in notes if n["channel"] == "email")

        async def sent() -> bool:
            return await email_status() == "sent"

        async def settled() -> bool:
            return await email_status() not in {"queued", "sending"}

        await wait_until(sent, timeout=15)
        past = datetime.now(UTC) - timedelta(minutes=5)
        async with service.engine.begin() as conn:  # claimed by a sender that then died
            await conn.execute(
                update(notifications)
                .where(N.channel == "email")
                .values(status="sending", lease_until=past)
            )
        response = await client.delete("/v1/customers/cust-ER-1/personal-data")
        assert response.status_code == 200, response.text
        async with service.engine.begin() as conn:  # its dispatch message comes back
            await conn.execute(
                update(notifications)
                .where(N.channel == "email")
                .values(dispatch_pending=True, dispatch_gen=N.dispatch_gen + 1)
            )
        service.outbox.wake()

        await wait_until(settled, timeout=15)
        view = await order(client, "ER-1")
        assert view is not None
        row = next(n for n in view["notifications"] if n["channel"] == "email")
        assert (row["status"], row["last_error"]) == ("suppressed", "customer erased")
        assert len(mail.messages()) == 1
        assert await _notification_letters(nats.url) == []


async def _notification_letters(url: str) -> list[str]:
    nc = await nats_client.connect(url)
    try:
        return [x.notification_id for x in await notification_dead_letters(nc.jetstream())]
    finally:
        await nc.close()
