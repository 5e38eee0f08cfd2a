"""The real WebhookChannel (httpx) against the dev WebhookReceiver (aiohttp) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from notifier.channels.base import OutboundMessage
from notifier.channels.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    USER_AGENT,
    WebhookChannel,
    WebhookEndpoint,
    WebhookEndpoints,
    verify,
)
from notifier.devtools.webhookreceiver import WebhookReceiver
from notifier.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError

SECRET = "partner-secret-0123456789"
BODY = json.dumps({"order_id": "o-1", "state": "shipped", "note": "café"}, ensure_ascii=False)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(SECRET)
    await receiver.start()
    yield receiver
    await receiver.stop()


def _endpoint(name: str, url: str, timeout_s: float | None = None) -> WebhookEndpoint:
    return WebhookEndpoint(name=name, url=url, secret=SecretStr(SECRET), timeout_s=timeout_s)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def channel(receiver: WebhookReceiver) -> AsyncIterator[WebhookChannel]:
    channel = WebhookChannel(
        WebhookEndpoints(
            [
                _endpoint("acme", receiver.url("/hooks/acme?token=tok-in-query")),
                _endpoint("slow", receiver.url("/hooks/slow"), timeout_s=0.2),
                _endpoint("nowhere", f"http://127.0.0.1:{_free_port()}/hooks"),
            ]
        ),
        default_timeout_s=2.0,
    )
    await channel.start()
    yield channel
    await channel.close()


def _message(to: str = "acme", notification_id: str = "n-1") -> OutboundMessage:
    return OutboundMessage(
        notification_id=notification_id,
        channel="webhook",
        to=to,
        text=BODY,
        order_id="o-1",
        state="shipped",
    )


async def test_delivery_is_signed_and_carries_its_id(
    channel: WebhookChannel, receiver: WebhookReceiver
) -> None:
    receipt = await channel.send(_message())

    assert (receipt.provider, receipt.provider_message_id) == ("webhook", "n-1")
    [got] = receiver.deliveries()
    assert got.verified and got.status == 200
    assert got.body == BODY.encode("utf-8")
    assert got.json["note"] == "café"
    assert got.path == "/hooks/acme"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == USER_AGENT
    assert got.delivery_id == got.headers[DELIVERY_HEADER] == "n-1"
    signature = got.headers[SIGNATURE_HEADER]
    assert signature.startswith(f"t={got.headers[TIMESTAMP_HEADER]},v1=")
    assert verify(SECRET, signature, got.body)
    assert not verify("some-other-secret-entirely", signature, got.body)


async def test_retries_keep_the_delivery_id(
    channel: WebhookChannel, receiver: WebhookReceiver
) -> None:
    receiver.respond(500)
    with pytest.raises(TransientDeliveryError):
        await channel.send(_message(notification_id="n-7"))
    await channel.send(_message(notification_id="n-7"))

    assert [d.delivery_id for d in receiver.deliveries()] == ["n-7", "n-7"]
    assert [d.status for d in receiver.deliveries()] == [500, 200]


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (429, "3", (TransientDeliveryError, "http_429", 3.0)),
        (503, None, (TransientDeliveryError, "http_503", None)),
        (500, None, (TransientDeliveryError, "http_500", None)),
        (404, None, (PermanentDeliveryError, "http_404", None)),
        (410, None, (PermanentDeliveryError, "http_410", None)),
        (302, None, (PermanentDeliveryError, "http_302", None)),
    ],
)
async def test_answers_map_to_typed_errors(
    channel: WebhookChannel,
    receiver: WebhookReceiver,
    status: int,
    retry_after: str | None,
    expected: tuple[type[DeliveryError], str, float | None],
) -> None:
    kind, code, expected_retry_after = expected
    receiver.respond(status, retry_after=retry_after)

    with pytest.raises(kind) as caught:
        await channel.send(_message())

    assert caught.value.code == code
    assert "acme" in str(caught.value) and "tok-in-query" not in str(caught.value)
    if isinstance(caught.value, TransientDeliveryError):
        assert caught.value.retry_after == expected_retry_after


async def test_bad_signature_is_refused_by_the_receiver(receiver: WebhookReceiver) -> None:
    wrong = WebhookEndpoint("acme", receiver.url("/hooks"), SecretStr("not-the-partner-secret"))
    channel = WebhookChannel(WebhookEndpoints([wrong]), default_timeout_s=2.0)
    await channel.start()
    try:
        with pytest.raises(PermanentDeliveryError) as caught:
            await channel.send(_message())
    finally:
        await channel.close()

    assert caught.value.code == "http_401"
    assert not receiver.deliveries()[0].verified


async def test_timeout_is_transient(channel: WebhookChannel, receiver: WebhookReceiver) -> None:
    receiver.latency_s = 1.0

    with pytest.raises(TransientDeliveryError) as caught:
        await channel.send(_message(to="slow"))

    assert caught.value.code == "timeout" and "slow" in str(caught.value)


async def test_connection_refused_is_transient(channel: WebhookChannel) -> None:
    with pytest.raises(TransientDeliveryError) as caught:
        await channel.send(_message(to="nowhere"))

    assert caught.value.code == "connect"


async def test_hang_up_is_transient(channel: WebhookChannel, receiver: WebhookReceiver) -> None:
    receiver.down = True

    with pytest.raises(TransientDeliveryError) as caught:
        await channel.send(_message())

    assert caught.value.code == "network"


async def test_unknown_endpoint_is_permanent(channel: WebhookChannel) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await channel.send(_message(to="removed-partner"))

    assert caught.value.code == "unknown_endpoint"


async def test_close_waits_for_sends_in_flight(receiver: WebhookReceiver) -> None:
    channel = WebhookChannel(
        WebhookEndpoints([_endpoint("acme", receiver.url())]), default_timeout_s=2.0
    )
    await channel.start()
    receiver.latency_s = 0.2
    sending = asyncio.create_task(channel.send(_message()))
    await asyncio.sleep(0.05)

    await channel.close()

    assert sending.done() and (await sending).provider_message_id == "n-1"
    with pytest.raises(RuntimeError, match="not running"):
        await channel.send(_message())


async def test_receiver_outbox_and_wait_for(
    channel: WebhookChannel, receiver: WebhookReceiver
) -> None:
    waiting = asyncio.create_task(receiver.wait_for(2, timeout=2))
    await channel.send(_message(notification_id="n-1"))
    await channel.send(_message(notification_id="n-2"))

    assert len(await waiting) == 2
    outbox = receiver.outbox("/hooks/acme")
    assert [d["headers"][DELIVERY_HEADER] for d in outbox] == ["n-1", "n-2"]
    assert json.loads(json.dumps(outbox)) == outbox
    with pytest.raises(TimeoutError):
        await receiver.wait_for(3, timeout=0.05)
