"""``notifier dlq``: read and re-drive dead letters, the operator's side of them.

``list`` shows the events the service refused (from the DEADLETTER stream) with counts
by reason and source from the dead-letter index; ``replay`` puts dead-lettered
notifications back in the ledger's queue, exactly once each. Apart from ``notifier.cli``
because both talk to the stream and the database in ways no other command does.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from notifier.commands.common import dev_database_url, fail, nats_url, settings_or_exit

if TYPE_CHECKING:
    from notifier.delivery.deadletters import NotificationDeadLetter

dlq_app = typer.Typer(
    no_args_is_help=True,
    help="Dead letters: events the service refused, and notifications it gave up on.",
)


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="At most this many, newest")] = 50,
    reason: Annotated[str | None, typer.Option(help="Only this reason")] = None,
) -> None:
    """List dead letters, one JSON object per line (reason, detail, original subject and
    sequence, body), then one line of counts of refused events by reason and by source,
    most frequent first."""
    from notifier.ingest.deadletters import format_dead_letter, list_dead_letters
    from notifier.nats_client import connect_once
    from notifier.store.db import create_engine
    from notifier.store.deadletter_index import dead_letter_triage

    url = nats_url()
    dev_database = dev_database_url()
    settings = settings_or_exit(**({"database_url": dev_database} if dev_database else {}))

    async def go() -> None:
        nc = await connect_once(url, name="notifier-dlq")
        engine = create_engine(settings.database_url)
        try:
            letters = await list_dead_letters(nc.jetstream(), limit=limit, reason=reason)
            triage = await dead_letter_triage(engine, reason=reason, limit=0)
        finally:
            await engine.dispose()
            await nc.close()
        for letter in letters:
            typer.echo(format_dead_letter(letter))
        typer.echo(json.dumps({"counts": triage.counts()}, ensure_ascii=False))

    try:
        asyncio.run(go())
    except Exception as exc:
        raise fail(f"cannot read dead letters from {url}: {type(exc).__name__}: {exc}") from None


@dlq_app.command("replay")
def dlq_replay(
    notification_id: Annotated[
        list[str] | None, typer.Option("--id", help="This notification (repeatable)")
    ] = None,
    channel: Annotated[str | None, typer.Option(help="Every dead letter of this channel")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Every notification dead letter")] = (
        False
    ),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would go")] = False,
) -> None:
    """Re-drive dead-lettered notifications, exactly once each.

    Each one goes back in the ledger's queue (only if it is still failed, so a second
    replay, even a concurrent one, does nothing) and its dead letter is removed; the
    running service sends it within a second.
    """
    from notifier.delivery.deadletters import notification_dead_letters, replay
    from notifier.nats_client import connect_once
    from notifier.store.db import create_engine

    if not (notification_id or channel or replay_all):
        raise fail("say what to replay: --id ID, --channel NAME or --all")
    url = nats_url()
    dev_database = dev_database_url()
    # a dry run reads only the stream: it needs no database settings
    settings = (
        None
        if dry_run
        else settings_or_exit(**({"database_url": dev_database} if dev_database else {}))
    )

    async def go() -> None:
        nc = await connect_once(url, name="notifier-dlq")
        try:
            js = nc.jetstream()
            letters = await notification_dead_letters(
                js, channel=channel, ids=notification_id or ()
            )
            if settings is None:
                _print_dry_run(letters, notification_id or ())
                return
            engine = create_engine(settings.database_url)
            try:
                report = await replay(js, engine, letters)
            finally:
                await engine.dispose()
        finally:
            await nc.close()
        missing = set(notification_id or ()) - {*report.replayed, *report.stale}
        typer.echo(
            f"replayed {len(report.replayed)}, not needed {len(report.stale)}"
            + (f", not found {len(missing)}" if missing else "")
            + " (not needed: re-driven already, told on another channel, or gone)"
        )
        for nid in report.replayed:
            typer.echo(f"replayed {nid}")
        for nid in sorted(missing):
            typer.echo(f"no dead letter for {nid}", err=True)

    try:
        asyncio.run(go())
    except Exception as exc:
        raise fail(f"cannot replay ({url}): {type(exc).__name__}: {exc}") from None


def _print_dry_run(letters: Sequence[NotificationDeadLetter], ids: Sequence[str]) -> None:
    """What a replay would try, by id, channel and reason only: the provider's error text
    stays out, as it can quote a recipient."""
    by_channel = Counter(letter.channel for letter in letters)
    missing = set(ids) - {letter.notification_id for letter in letters}
    if letters:
        channels = ", ".join(f"{name} {count}" for name, count in sorted(by_channel.items()))
        summary = (
            f"would replay {len(letters)} ({channels}); each goes back in the queue "
            "only if its notification is still failed"
        )
    else:
        summary = "would replay 0: no notification dead letter matches"
    typer.echo(
        f"dry run, nothing changed: {summary}" + (f"; not found {len(missing)}" if missing else "")
    )
    for letter in letters:
        typer.echo(f"would replay {letter.notification_id} ({letter.channel}, {letter.reason})")
    for nid in sorted(missing):
        typer.echo(f"no dead letter for {nid}", err=True)
