"""Messages that come from the shop, end to end: the stores file decides the email's
From, Reply-To, header and footer and the SMS sender, as the ledger records them; a
revised tracking number is corrected on the channels that carried it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.smtp import SMTP
from sqlalchemy import select

from notifier.devtools.natsserver import NatsServer
from notifier.devtools.twiliofake import TwilioFake
from notifier.store.db import create_engine
from notifier.store.tables import notifications
from tests.integration.helpers import channel_settings, event, order, publish, running

ACME = {
    "name": "Acme Outdoor",
    "email_from": "Acme Outdoor <orders@acme.example>",
    "reply_to": "help@acme.example",
    "sms_sender": "ACME",
    "logo_url": "https://acme.example/logo.png",
    "brand_color": "#0a7d4f",
    "support_email": "help@acme.example",
    "support_phone": "+14155550100",
    "website": "https://acme.example",
}
LUNE = {"name": "Maison Lune", "email_from": "Maison Lune <commandes@lune.example>"}
SERVICE_SID = "MG" + "0" * 32


class Inbox:
    """A real SMTP server (aiosmtpd) that keeps each message whole, headers included."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, EmailMessage]] = []
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="inbox", loop=loop), "127.0.0.1", 0
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = BytesParser(_class=EmailMessage, policy=policy.default).parsebytes(
            envelope.original_content
        )
        async with self._arrived:
            self.messages.append((envelope.mail_from, parsed))
            self._arrived.notify_all()
        return "250 OK"

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[tuple[str, EmailMessage]]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.messages) >= count)
        return list(self.messages)


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    box = Inbox()
    await box.start()
    yield box
    await box.stop()


def stores_file(tmp_path: Path) -> Path:
    path = tmp_path / "stores.yaml"
    path.write_text(yaml.safe_dump({"stores": {"acme": ACME, "lune": LUNE}}))
    return path


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


async def ledger(database_url: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(
                    notifications.c.channel,
                    notifications.c.template,
                    notifications.c.sender,
                    notifications.c.reply_to,
                    notifications.c.order_id,
                )
            )
            return [dict(r) for r in rows.mappings()]
    finally:
        await engine.dispose()


async def test_an_email_and_an_sms_come_from_their_store(
    nats: NatsServer, inbox: Inbox, twilio: TwilioFake, tmp_path: Path, database_url: str
) -> None:
    settings = channel_settings(
        nats.url, database_url, inbox.port, twilio=twilio, stores_file=stores_file(tmp_path)
    )
    async with running(settings):
        branded = event("B-1", "shipped", 0, phone="+33612345678")
        branded["attributes"]["store_id"] = "acme"
        plain = event("B-2", "shipped", 0, source="lune", phone="+33612345679")
        unknown = event("B-3", "shipped", 0, source="elsewhere")
        await publish(nats.url, branded, plain, unknown)
        caught = await inbox.wait_for(3)
        sms = await twilio.wait_for(2, timeout=15)
    by_order = {str(m["Subject"]).split()[2]: (sender, m) for sender, m in caught}

    sender, acme = by_order["B-1"]
    assert str(acme["From"]) == "Acme Outdoor <orders@acme.example>"
    assert str(acme["Reply-To"]) == "help@acme.example"
    assert sender == "orders@acme.example"  # the envelope, aligned with From
    assert str(acme["Message-ID"]).endswith("@acme.example>")
    html = html_of(acme)
    assert '<img src="https://acme.example/logo.png" alt="Acme Outdoor"' in html
    assert "#0a7d4f" in html  # the brand colour as the accent
    assert '<a href="mailto:help@acme.example">help@acme.example</a>' in html
    assert '<a href="tel:+14155550100">+14155550100</a>' in html
    assert '<a href="https://acme.example">Acme Outdoor</a>' in html
    assert "Tea &amp; Co" not in html  # the store, not the attribute, names the shop
    text = text_of(acme)
    assert text.startswith("Hi Ada,")
    assert "--\nAcme Outdoor\nQuestions about your order? help@acme.example · +14155550100" in text

    _, lune = by_order["B-2"]  # by its source; no reply-to, logo or colour
    assert str(lune["From"]) == "Maison Lune <commandes@lune.example>"
    assert "Reply-To" not in lune and "<img" not in html_of(lune)
    assert "#18181b" in html_of(lune)

    _, other = by_order["B-3"]  # no store: the channel's own sender, as before
    assert str(other["From"]) == "Tea & Co <orders@tea.example.com>"
    assert str(other["Message-ID"]).endswith("@tea.example.com>")

    senders = {m.to: m.from_ for m in sms}
    assert senders == {"+33612345678": "ACME", "+33612345679": "+15005550006"}
    assert any(m.body.startswith("Acme Outdoor: ") for m in sms)

    rows = {(r["order_id"], r["channel"]): r for r in await ledger(database_url)}
    assert (rows["B-1", "email"]["sender"], rows["B-1", "email"]["reply_to"]) == (
        "Acme Outdoor <orders@acme.example>",
        "help@acme.example",
    )
    assert rows["B-1", "sms"]["sender"] == "ACME"
    assert rows["B-2", "sms"]["sender"] is None  # Maison Lune has no SMS sender
    assert rows["B-3", "email"]["sender"] is None


async def test_a_messaging_service_keeps_its_own_sender(
    nats: NatsServer, inbox: Inbox, twilio: TwilioFake, tmp_path: Path, database_url: str
) -> None:
    settings = channel_settings(
        nats.url,
        database_url,
        inbox.port,
        twilio=twilio,
        stores_file=stores_file(tmp_path),
        twilio_from=SERVICE_SID,
    )
    async with running(settings) as (_service, client):
        branded = event("M-1", "shipped", 0, phone="+33612345678")
        branded["attributes"]["store_id"] = "acme"
        await publish(nats.url, branded)
        (sms,) = await twilio.wait_for(1, timeout=15)
        await inbox.wait_for(1)
        view = await order(client, "M-1")
    assert view is not None
    shown = {n["channel"]: (n["sender"], n["reply_to"]) for n in view["notifications"]}
    assert shown == {
        "email": ("Acme Outdoor <orders@acme.example>", "help@acme.example"),
        "sms": (None, None),
        "push": (None, None),  # no push token; and push has no sender a store sets
        "inapp": (None, None),  # the customer's own feed: nobody sends it
    }
    assert sms.from_ is None and sms.messaging_service_sid == SERVICE_SID
    rows = {r["channel"]: r for r in await ledger(database_url)}
    assert rows["sms"]["sender"] is None  # the ledger says what was sent: the service's
    assert rows["email"]["sender"] == "Acme Outdoor <orders@acme.example>"


async def test_a_new_tracking_number_is_corrected_on_the_channels_that_carried_it(
    nats: NatsServer, inbox: Inbox, twilio: TwilioFake, tmp_path: Path, database_url: str
) -> None:
    settings = channel_settings(
        nats.url, database_url, inbox.port, twilio=twilio, stores_file=stores_file(tmp_path)
    )
    async with running(settings):
        first = event("C-1", "shipped", 0, phone="+33612345678", locale="fr")
        first["attributes"]["store_id"] = "acme"
        await publish(nats.url, first)
        await inbox.wait_for(1)
        await twilio.wait_for(1, timeout=15)
        revised = dict(first, shipment={**first["shipment"], "tracking_number": "JD0002"})
        await publish(nats.url, revised, msg_ids=["C-1-shipped-0.r2"])
        caught = await inbox.wait_for(2)
        sms = await twilio.wait_for(2, timeout=15)
    _, correction = caught[1]
    assert str(correction["Subject"]) == (
        "Correction : nouveau numéro de suivi pour votre commande C-1"
    )
    assert str(correction["From"]) == "Acme Outdoor <orders@acme.example>"
    assert "Nouveau numéro de suivi : JD0002 (au lieu de JD0001)" in text_of(correction)
    assert "JD0002" in html_of(correction) and "JD0001" in html_of(correction)
    assert "nouveau numéro de suivi JD0002 (au lieu de JD0001)" in sms[1].body
    assert sms[1].from_ == "ACME"
