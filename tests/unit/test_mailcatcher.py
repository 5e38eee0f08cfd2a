"""The dev mail catcher, fed by the real EmailChannel and read through its HTTP router."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from notifier.channels.base import OutboundMessage
from notifier.channels.email import EmailChannel
from notifier.config import SmtpTls
from notifier.devtools.mailcatcher import MailCatcher, outbox_router


@pytest.fixture
async def catcher() -> AsyncIterator[MailCatcher]:
    catcher = MailCatcher()
    await catcher.start()
    yield catcher
    await catcher.stop()


@pytest.fixture
async def channel(catcher: MailCatcher) -> AsyncIterator[EmailChannel]:
    channel = EmailChannel(
        host="127.0.0.1",
        port=catcher.port,
        tls=SmtpTls.NONE,
        username=None,
        password=None,
        ca_file=None,
        from_addr="Shop <orders@shop.example>",
        timeout_s=2.0,
        pool_size=2,
    )
    await channel.start()
    yield channel
    await channel.close()


def outbound(notification_id: str, to: str, **overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "notification_id": notification_id,
        "channel": "email",
        "to": to,
        "subject": f"Order {notification_id} shipped",
        "text": "Your parcel is on its way. Grüße!",
        "html": "<p>Your parcel is on its way. <b>Grüße!</b></p>",
        "locale": "de",
        **overrides,
    }
    return OutboundMessage(**fields)


async def test_catches_what_the_email_channel_sends(
    catcher: MailCatcher, channel: EmailChannel
) -> None:
    await channel.send(outbound("n-1", "Ada <ada@example.org>"))
    await channel.send(outbound("n-2", "bob@example.org", html=None))

    first, second = await catcher.wait_for(2, timeout=2)
    assert first.message_id == first.headers["Message-ID"] == "<n-1@shop.example>"
    assert (first.mail_from, first.rcpt_tos) == ("orders@shop.example", ["ada@example.org"])
    assert first.subject == "Order n-1 shipped"
    assert first.text.strip() == "Your parcel is on its way. Grüße!"
    assert first.html is not None and "<b>Grüße!</b>" in first.html
    assert first.headers["Content-Language"] == "de"
    assert "Date" in first.headers
    assert datetime.fromisoformat(first.received_at).tzinfo is not None
    assert (second.rcpt_tos, second.html) == (["bob@example.org"], None)


async def test_outbox_router_lists_filters_and_clears(
    catcher: MailCatcher, channel: EmailChannel
) -> None:
    for i, to in enumerate(["ada@example.org", "bob@example.org", "ada@example.org"]):
        await channel.send(outbound(f"n-{i}", to))
    await catcher.wait_for(3, timeout=2)

    app = FastAPI()
    app.include_router(outbox_router(catcher))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dev") as http:
        listed = (await http.get("/dev/outbox")).json()
        for_ada = (await http.get("/dev/outbox", params={"to": "ADA@example.org"})).json()
        newest = (await http.get("/dev/outbox", params={"limit": 1})).json()
        too_many = await http.get("/dev/outbox", params={"limit": 0})
        cleared = await http.delete("/dev/outbox")
        after = (await http.get("/dev/outbox")).json()

    assert [m["message_id"] for m in listed] == [
        "<n-0@shop.example>",
        "<n-1@shop.example>",
        "<n-2@shop.example>",
    ]
    assert listed[0]["rcpt_tos"] == ["ada@example.org"]
    assert set(listed[0]) >= {"subject", "text", "html", "received_at", "headers", "mail_from"}
    assert [m["message_id"] for m in for_ada] == ["<n-0@shop.example>", "<n-2@shop.example>"]
    assert [m["message_id"] for m in newest] == ["<n-2@shop.example>"]
    assert too_many.status_code == 422
    assert cleared.status_code == 204
    assert after == []
    assert catcher.messages() == []


async def test_keeps_only_the_newest_messages() -> None:
    small = MailCatcher(max_messages=3)
    await small.start()
    try:
        channel_for_small = EmailChannel(
            host="127.0.0.1",
            port=small.port,
            tls=SmtpTls.NONE,
            username=None,
            password=None,
            ca_file=None,
            from_addr="orders@shop.example",
            timeout_s=2.0,
            pool_size=1,
        )
        await channel_for_small.start()
        for i in range(5):
            await channel_for_small.send(outbound(f"n-{i}", "ada@example.org"))
        await channel_for_small.close()
        assert [m.message_id for m in small.messages()] == [
            "<n-2@shop.example>",
            "<n-3@shop.example>",
            "<n-4@shop.example>",
        ]
    finally:
        await small.stop()


async def test_wait_for_times_out_instead_of_hanging(catcher: MailCatcher) -> None:
    with pytest.raises(TimeoutError):
        await catcher.wait_for(1, timeout=0.05)


async def test_wait_for_wakes_as_soon_as_mail_arrives(
    catcher: MailCatcher, channel: EmailChannel
) -> None:
    waiting = asyncio.create_task(catcher.wait_for(1, timeout=2))
    await asyncio.sleep(0)
    assert not waiting.done()
    await channel.send(outbound("n-1", "ada@example.org"))
    assert [m.message_id for m in await waiting] == ["<n-1@shop.example>"]


async def test_stop_does_not_wait_for_pooled_clients(
    catcher: MailCatcher, channel: EmailChannel
) -> None:
    await channel.send(outbound("n-1", "ada@example.org"))
    async with asyncio.timeout(2):
        await catcher.stop()
