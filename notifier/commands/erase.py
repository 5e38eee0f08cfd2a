"""``notifier erase-customer``: a customer's right to erasure, from the command line.

Erases the customer's contacts, names and message bodies from the database and their
refused events from the DEADLETTER stream (the event dead letters keep the original
payload, so they hold personal data too). NATS is reached only if there is a dead
letter to delete, but its URL must be known: a customer's dead letters are never
skipped for want of one.
"""

from __future__ import annotations

import typer

from notifier.commands.common import nats_url, run_db_command, settings_or_exit


def erase_customer_cmd(customer_id: str) -> None:
    """Erase one customer's contacts, names and message bodies from the database, and
    their refused events from the dead letters (NATS is reached only if there are any)."""
    from nats.aio.client import Client as NatsClient

    from notifier.errors import DeadLetterError
    from notifier.ingest.deadletters import delete_dead_letter
    from notifier.nats_client import connect_once
    from notifier.store.db import create_engine
    from notifier.store.maintenance import erase_customer

    settings = settings_or_exit()
    url = nats_url()
    nc: NatsClient | None = None

    async def delete(seq: int) -> None:
        nonlocal nc
        if nc is None:
            try:
                nc = await connect_once(url, name="notifier-erase")
            except Exception as exc:
                raise DeadLetterError(f"NATS at {url}: {type(exc).__name__}") from exc
        await delete_dead_letter(nc.jetstream(), seq)

    async def go() -> None:
        engine = create_engine(settings.database_url)
        try:
            report = await erase_customer(engine, customer_id, delete_dead_letter=delete)
        finally:
            await engine.dispose()
            if nc is not None:
                await nc.close()
        typer.echo(
            f"erased: {report.events} event(s), {report.notifications} notification(s), "
            f"{report.dead_letters} dead letter(s), {report.feed_items} feed item(s), "
            f"{report.preferences} preference document(s)"
        )

    run_db_command(go())
