"""SmsChannel with the real ``twilio`` client against TwilioFake on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from notifier.channels.base import OutboundMessage
from notifier.channels.sms import PLUGIN, SmsChannel, twilio_error
from notifier.channels.twilio_receipts import (
    TwilioReceipt,
    parse_status_callback,
    verify_twilio_signature,
)
from notifier.config import Settings
from notifier.core.model import NotificationStatus
from notifier.devtools.twiliofake import TwilioFake
from notifier.devtools.twiliowire import Failure
from notifier.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from tests.support import free_port

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "secret-token-0123456789"
SENDER = "+15005550006"
SERVICE = "MG" + "fedcba9876543210" * 2
CUSTOMER = "+4915112345678"

MakeChannel = Callable[..., Awaitable[SmsChannel]]


def sms(
    to: str = CUSTOMER, text: str = "Your order 42 has shipped.", nid: str = "n-1"
) -> OutboundMessage:
    return OutboundMessage(notification_id=nid, channel="sms", to=to, text=text)


@dataclass
class Receiver:
    """A stand-in for our receipts route: checks the signature, keeps what came."""

    base_url: str = ""
    seen: list[tuple[str, dict[str, str], str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        params = {k: str(v) for k, v in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        self.seen.append((str(request.url), params, signature))
        valid = verify_twilio_signature(AUTH_TOKEN, str(request.url), params, signature)
        return web.Response(status=204 if valid else 403)


@pytest.fixture
async def fake() -> AsyncIterator[TwilioFake]:
    twilio = TwilioFake(ACCOUNT_SID, AUTH_TOKEN)
    await twilio.start()
    yield twilio
    await twilio.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/v1/receipts/twilio", found.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield found
    await runner.cleanup()


@pytest.fixture
async def make_channel(fake: TwilioFake) -> AsyncIterator[MakeChannel]:
    started: list[SmsChannel] = []

    async def make(**overrides: Any) -> SmsChannel:
        options: dict[str, Any] = {
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "sender": SENDER,
            "api_base": fake.base_url,
            "timeout_s": 5.0,
        }
        options.update(overrides)
        channel = SmsChannel(**options)
        await channel.start()
        started.append(channel)
        return channel

    yield make
    for channel in started:
        await channel.close()


async def test_send_returns_the_sid_and_twilio_gets_auth_and_fields(
    fake: TwilioFake, make_channel: MakeChannel
) -> None:
    channel = await make_channel(public_base_url="https://notify.example.com/")
    receipt = await channel.send(sms(nid="n/1 2"))

    [message] = fake.messages()
    assert receipt.provider == "twilio"
    assert receipt.provider_message_id == message.sid
    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert message.auth_user == ACCOUNT_SID
    assert message.form == {
        "To": CUSTOMER,
        "From": SENDER,
        "Body": "Your order 42 has shipped.",
        "StatusCallback": "https://notify.example.com/v1/receipts/twilio?n=n%2F1%202",
    }
    assert message.status == "queued"
    assert message.num_segments == 1


async def test_a_messaging_service_sender_and_no_public_url(
    fake: TwilioFake, make_channel: MakeChannel
) -> None:
    channel = await make_channel(sender=SERVICE)
    await channel.send(sms())

    [message] = fake.messages()
    assert message.form == {
        "To": CUSTOMER,
        "MessagingServiceSid": SERVICE,
        "Body": "Your order 42 has shipped.",
    }
    assert fake.outbox() == [
        {
            "sid": message.sid,
            "to": CUSTOMER,
            "from": SERVICE,
            "body": message.body,
            "status": "accepted",
            "received_at": message.received_at,
        }
    ]


@dataclass(frozen=True)
class Refused:
    """What a scripted fake does to a send, and the error the channel must raise."""

    script: Callable[[TwilioFake], None]
    error: type[DeliveryError]
    code: str
    retry_after: float | None = None
    dead_recipient: bool = False


REFUSALS = {
    "21211 invalid number": Refused(
        lambda f: f.invalid_numbers.add(CUSTOMER),
        PermanentDeliveryError,
        "invalid_number",
        dead_recipient=True,
    ),
    "21610 unsubscribed": Refused(
        lambda f: f.unsubscribed_numbers.add(CUSTOMER), PermanentDeliveryError, "unsubscribed"
    ),
    "21614 not mobile": Refused(
        lambda f: f.number_failures.update({CUSTOMER: Failure(400, 21614, "not mobile")}),
        PermanentDeliveryError,
        "not_mobile",
        dead_recipient=True,
    ),
    "21408 region": Refused(
        lambda f: f.fail_next(1, 400, 21408), PermanentDeliveryError, "region_not_enabled"
    ),
    "other 4xx": Refused(
        lambda f: f.fail_next(1, 400, 21999), PermanentDeliveryError, "twilio_21999"
    ),
    "429 Retry-After 7": Refused(
        lambda f: f.fail_next(1, 429, retry_after=7),
        TransientDeliveryError,
        "rate_limited",
        retry_after=7.0,
    ),
    "429 without Retry-After": Refused(
        lambda f: f.fail_next(1, 429), TransientDeliveryError, "rate_limited"
    ),
    "500": Refused(lambda f: f.fail_next(1, 500), TransientDeliveryError, "twilio_500"),
    "503 down": Refused(lambda f: setattr(f, "down", True), TransientDeliveryError, "twilio_503"),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
async def test_refusals_map_to_typed_errors(
    fake: TwilioFake, make_channel: MakeChannel, case: Refused
) -> None:
    channel = await make_channel()
    case.script(fake)

    with pytest.raises(case.error) as raised:
        await channel.send(sms())

    assert raised.value.code == case.code
    if isinstance(raised.value, TransientDeliveryError):
        assert raised.value.retry_after == case.retry_after
    else:
        assert isinstance(raised.value, PermanentDeliveryError)
        assert raised.value.dead_recipient is case.dead_recipient
    # Twilio's text quotes the number (21211 does); errors are stored, so it is masked.
    assert CUSTOMER not in str(raised.value)
    assert CUSTOMER[1:] not in str(raised.value)
    assert fake.request_count == 1, "the library must not retry on its own"
    assert fake.messages() == []


async def test_wrong_credentials_are_transient(fake: TwilioFake, make_channel: MakeChannel) -> None:
    channel = await make_channel(auth_token="not-the-token")
    with pytest.raises(TransientDeliveryError) as raised:
        await channel.send(sms())
    assert raised.value.code == "credentials"
    assert "NOTIFIER_TWILIO_AUTH_TOKEN" in str(raised.value)


async def test_a_slow_twilio_times_out_as_transient(
    fake: TwilioFake, make_channel: MakeChannel
) -> None:
    channel = await make_channel(timeout_s=0.2)
    fake.latency_s = 2.0
    started = time.monotonic()
    with pytest.raises(TransientDeliveryError) as raised:
        await channel.send(sms())
    assert raised.value.code == "timeout"
    assert time.monotonic() - started < 1.5


async def test_an_unreachable_twilio_is_transient(make_channel: MakeChannel) -> None:
    channel = await make_channel(api_base=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientDeliveryError) as raised:
        await channel.send(sms())
    assert raised.value.code == "connect"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (sms(to="015112345678"), "invalid_number"),
        (sms(to="+49 151 1234"), "invalid_number"),
        (sms(text=""), "empty_body"),
        (sms(text="a" * (153 * 6 + 1)), "too_long"),
        (sms(text="😀" * (33 * 6 + 1)), "too_long"),
    ],
    ids=["no plus", "spaces", "empty", "7 GSM-7 parts", "7 UCS-2 parts"],
)
async def test_unsendable_messages_never_reach_twilio(
    fake: TwilioFake, make_channel: MakeChannel, message: OutboundMessage, code: str
) -> None:
    channel = await make_channel(max_segments=6)
    with pytest.raises(PermanentDeliveryError) as raised:
        await channel.send(message)
    assert raised.value.code == code
    assert fake.request_count == 0


async def test_six_segments_are_allowed(fake: TwilioFake, make_channel: MakeChannel) -> None:
    channel = await make_channel(max_segments=6)
    await channel.send(sms(text="😀" * (33 * 6)))
    assert fake.messages()[0].num_segments == 6


async def test_each_concurrent_send_sees_its_own_retry_after(
    fake: TwilioFake, make_channel: MakeChannel
) -> None:
    channel = await make_channel()
    waits = {f"+4915100000{i:03d}": float(i + 1) for i in range(20)}
    for number, seconds in waits.items():
        fake.number_failures[number] = Failure(429, 20429, "Too Many Requests", seconds)
    fake.latency_s = 0.05

    results = await asyncio.gather(
        *(channel.send(sms(to=number)) for number in waits), return_exceptions=True
    )

    seen = [r.retry_after if isinstance(r, TransientDeliveryError) else r for r in results]
    assert seen == list(waits.values())


async def test_close_waits_for_sends_in_flight(fake: TwilioFake, make_channel: MakeChannel) -> None:
    channel = await make_channel()
    fake.latency_s = 0.3
    sending = asyncio.create_task(channel.send(sms()))
    await asyncio.sleep(0.05)
    await channel.close()
    assert (await sending).provider_message_id == fake.messages()[0].sid
    with pytest.raises(RuntimeError, match="start"):
        await channel.send(sms())


async def test_twilio_environment_variables_do_not_move_the_host(
    fake: TwilioFake, make_channel: MakeChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")
    channel = await make_channel()
    await channel.send(sms())
    assert len(fake.messages()) == 1


async def test_callbacks_are_signed_and_parse_into_receipts(
    fake: TwilioFake, make_channel: MakeChannel, receiver: Receiver
) -> None:
    channel = await make_channel(public_base_url=receiver.base_url)
    fake.undelivered_numbers.add("+15005550009")
    fake.failed_numbers.add("+15005550010")
    ok = await channel.send(sms(nid="n-ok"))
    lost = await channel.send(sms(to="+15005550009", nid="n-lost"))
    failed = await channel.send(sms(to="+15005550010", nid="n-failed"))

    callbacks = await fake.wait_for_callbacks(6)

    assert [c.response_status for c in callbacks] == [204] * 6
    finals = {c.sid: parse_status_callback(c.params) for c in callbacks}
    assert finals == {
        ok.provider_message_id: TwilioReceipt(
            ok.provider_message_id, NotificationStatus.DELIVERED, None
        ),
        lost.provider_message_id: TwilioReceipt(
            lost.provider_message_id, NotificationStatus.UNDELIVERED, "30003"
        ),
        failed.provider_message_id: TwilioReceipt(
            failed.provider_message_id, NotificationStatus.FAILED, "30008"
        ),
    }
    assert [parse_status_callback(c.params) for c in callbacks if c.message_status == "sent"] == [
        None
    ] * 3
    assert {m.sid: m.status for m in fake.messages()} == {
        ok.provider_message_id: "delivered",
        lost.provider_message_id: "undelivered",
        failed.provider_message_id: "failed",
    }

    url, params, signature = receiver.seen[-1]
    assert url.endswith("/v1/receipts/twilio?n=n-failed")
    assert verify_twilio_signature(AUTH_TOKEN, url, params, signature)
    assert not verify_twilio_signature(
        AUTH_TOKEN, url, {**params, "MessageStatus": "delivered"}, signature
    )
    assert not verify_twilio_signature(
        AUTH_TOKEN, url.replace("n-failed", "n-ok"), params, signature
    )
    assert not verify_twilio_signature("another-token", url, params, signature)
    assert not verify_twilio_signature(AUTH_TOKEN, url, params, "")


async def test_a_receiver_that_refuses_is_recorded(
    fake: TwilioFake, make_channel: MakeChannel, receiver: Receiver
) -> None:
    other = TwilioFake(ACCOUNT_SID, "a-different-token")  # signs with the wrong token
    await other.start()
    try:
        channel = await make_channel(
            public_base_url=receiver.base_url,
            api_base=other.base_url,
            auth_token="a-different-token",
        )
        await channel.send(sms())
        callbacks = await other.wait_for_callbacks(2)
    finally:
        await other.stop()
    assert [c.response_status for c in callbacks] == [403, 403]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"MessageSid": "SM1", "MessageStatus": "delivered"},
            TwilioReceipt("SM1", NotificationStatus.DELIVERED, None),
        ),
        (
            {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30005"},
            TwilioReceipt("SM1", NotificationStatus.UNDELIVERED, "30005"),
        ),
        (
            {"SmsSid": "SM1", "SmsStatus": "failed", "ErrorCode": ""},
            TwilioReceipt("SM1", NotificationStatus.FAILED, None),
        ),
        *(
            ({"MessageSid": "SM1", "MessageStatus": s}, None)
            for s in ("queued", "accepted", "scheduled", "sending", "sent", "read", "canceled")
        ),
        ({"MessageStatus": "delivered"}, None),
    ],
)
def test_parse_status_callback(params: dict[str, str], expected: TwilioReceipt | None) -> None:
    assert parse_status_callback(params) == expected


@pytest.mark.parametrize(
    ("status", "code", "error", "our_code"),
    [
        (400, 21211, PermanentDeliveryError, "invalid_number"),
        (400, 21610, PermanentDeliveryError, "unsubscribed"),
        (400, 21614, PermanentDeliveryError, "not_mobile"),
        (400, 21408, PermanentDeliveryError, "region_not_enabled"),
        (400, 21612, PermanentDeliveryError, "unreachable"),
        (400, 21606, PermanentDeliveryError, "invalid_sender"),
        (400, 21265, PermanentDeliveryError, "invalid_number"),
        (400, 21604, PermanentDeliveryError, "twilio_21604"),
        (404, 20404, PermanentDeliveryError, "twilio_20404"),
        (429, 20429, TransientDeliveryError, "rate_limited"),
        (429, None, TransientDeliveryError, "rate_limited"),
        (400, 20429, TransientDeliveryError, "rate_limited"),
        (401, 20003, TransientDeliveryError, "credentials"),
        (403, 20005, TransientDeliveryError, "credentials"),
        (500, 20500, TransientDeliveryError, "twilio_500"),
        (502, None, TransientDeliveryError, "twilio_502"),
        (503, 20503, TransientDeliveryError, "twilio_503"),
        (302, None, TransientDeliveryError, "twilio_302"),
    ],
)
def test_twilio_error_table(
    status: int, code: int | None, error: type[DeliveryError], our_code: str
) -> None:
    mapped = twilio_error(status, code, f"The 'To' number {CUSTOMER} is not valid.")
    assert type(mapped) is error
    assert mapped.code == our_code
    assert CUSTOMER not in str(mapped)


def _settings(**values: Any) -> Settings:
    return Settings(**values)


def test_disabled_reason_names_the_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ACCOUNT_SID", "AUTH_TOKEN", "FROM"):
        monkeypatch.delenv(f"NOTIFIER_TWILIO_{name}", raising=False)
    assert PLUGIN.disabled_reason(_settings()) == (
        "NOTIFIER_TWILIO_ACCOUNT_SID, NOTIFIER_TWILIO_AUTH_TOKEN, NOTIFIER_TWILIO_FROM are not set"
    )
    partial = _settings(twilio_account_sid=ACCOUNT_SID, twilio_from=SENDER)
    assert PLUGIN.disabled_reason(partial) == "NOTIFIER_TWILIO_AUTH_TOKEN is not set"
    with pytest.raises(ConfigError, match="NOTIFIER_TWILIO_AUTH_TOKEN"):
        SmsChannel.from_settings(partial)
    full = _settings(
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, twilio_from=SERVICE
    )
    assert PLUGIN.disabled_reason(full) is None
    assert isinstance(SmsChannel.from_settings(full), SmsChannel)
    with pytest.raises(ConfigError, match="NOTIFIER_TWILIO_FROM"):
        SmsChannel.from_settings(full.model_copy(update={"twilio_from": "015112345678"}))


@pytest.fixture
async def connections(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[tuple[str, object]]]:
    """Every name resolved and every address connected to while the test runs."""
    seen: list[tuple[str, object]] = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(("resolve", host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    loop = asyncio.get_running_loop()
    real_connect = loop.sock_connect

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        seen.append(("connect", address[0]))
        await real_connect(sock, address)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    yield seen


async def test_nothing_but_127_0_0_1_is_contacted(
    connections: list[tuple[str, object]],
    make_channel: MakeChannel,
    fake: TwilioFake,
    receiver: Receiver,
) -> None:
    channel = await make_channel(public_base_url=receiver.base_url)
    await channel.send(sms())
    await fake.wait_for_callbacks(2)

    assert ("connect", "127.0.0.1") in connections
    assert {host for _, host in connections} <= {"127.0.0.1", "localhost"}
