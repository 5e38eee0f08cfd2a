"""SMS and push end to end through the service: the real twilio and firebase-admin
clients against the fakes, and Twilio's signed receipt back through the API."""

from __future__ import annotations

from pathlib import Path

from notifier.devtools.fcmfake import FcmFake
from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer, free_port
from notifier.devtools.twiliofake import TwilioFake
from tests.integration.helpers import channel_settings, event, order, publish, serving
from tests.support import wait_until


async def test_shipped_goes_out_on_email_push_and_sms_and_the_sms_receipt_lands(
    nats: NatsServer,
    mail: MailCatcher,
    twilio: TwilioFake,
    fcm: FcmFake,
    tmp_path: Path,
    database_url: str,
) -> None:
    settings = channel_settings(
        nats.url,
        database_url,
        mail.port,
        twilio=twilio,
        fcm=fcm,
        credentials=tmp_path / "fcm-credentials.json",
        http_port=free_port(),
    )
    async with serving(settings) as (_service, client):
        await publish(
            nats.url, event("C-1", "shipped", 0, phone="+14155550100", push_tokens=["tok-C-1"])
        )
        await mail.wait_for(1, timeout=15)
        sms = await twilio.wait_for(1, timeout=15)
        push = await fcm.wait_for(1, timeout=15)
        assert sms[0].to == "+14155550100" and "C-1" in sms[0].body
        assert push[0].token == "tok-C-1"

        async def delivered() -> bool:
            view = await order(client, "C-1")
            return view is not None and any(
                n["channel"] == "sms" and n["status"] == "delivered" for n in view["notifications"]
            )

        await wait_until(delivered, timeout=15)
