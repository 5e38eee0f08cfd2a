"""The push channel: the real firebase-admin client against the FCM fake on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from google.auth.transport.requests import Request as AuthRequest
from google.oauth2 import service_account

from notifier.channels.base import OutboundMessage
from notifier.channels.fcm_client import FCM_SCOPE
from notifier.channels.push import PushChannel, apns_collapse_id
from notifier.devtools.fcmfake import FcmFake
from notifier.devtools.fcmwire import FcmFailure
from notifier.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from tests.support import free_port, wait_until

TOKEN = "dTok3n:APA91bH-example-registration-token"
#: what a failed send may take: one request, no retries inside the library
FAST_S = 1.0


def _message(notification_id: str = "n-1", to: str = TOKEN, **fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "channel": "push",
        "text": "Your order 1042 has shipped",
        "subject": "Shipped",
        "order_id": "1042",
        "template": "order_shipped",
        "state": "shipped",
    }
    values.update(fields)
    return OutboundMessage(notification_id=notification_id, to=to, **values)


@pytest.fixture
async def fake() -> AsyncIterator[FcmFake]:
    server = FcmFake()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def credentials(fake: FcmFake, tmp_path: Path) -> Path:
    return fake.write_credentials(tmp_path / "service-account.json")


@pytest.fixture
async def make_channel(
    fake: FcmFake, credentials: Path
) -> AsyncIterator[Callable[..., PushChannel]]:
    """Build channels against the fake; every one made is closed after the test."""
    made: list[PushChannel] = []

    def make(**overrides: Any) -> PushChannel:
        options: dict[str, Any] = {
            "credentials_file": credentials,
            "api_base": fake.base_url,
            "timeout_s": 2.0,
            "max_workers": 8,
        }
        options.update(overrides)
        channel = PushChannel(**options)
        made.append(channel)
        return channel

    yield make
    for channel in made:
        await channel.close()


@pytest.fixture
async def channel(make_channel: Callable[..., PushChannel]) -> PushChannel:
    started = make_channel()
    await started.start()
    return started


async def test_a_send_reaches_fcm_with_title_body_data_and_collapse_identity(
    channel: PushChannel, fake: FcmFake
) -> None:
    receipt = await channel.send(_message("n-1"))

    [pushed] = await fake.wait_for(1)
    assert receipt.provider == "fcm"
    assert receipt.provider_message_id == f"projects/notifier-dev/messages/{pushed.message_id}"
    assert (pushed.token, pushed.title, pushed.body) == (
        TOKEN,
        "Shipped",
        "Your order 1042 has shipped",
    )
    assert pushed.data == {"notification_id": "n-1", "order_id": "1042", "state": "shipped"}
    assert pushed.collapse_key == "n-1"
    assert pushed.apns_headers == {"apns-collapse-id": "n-1"}
    assert json.dumps(fake.outbox())


async def test_a_repeated_send_carries_the_same_collapse_identity(
    channel: PushChannel, fake: FcmFake
) -> None:
    long_id = "order-1042-shipped-" + "x" * 80
    await channel.send(_message(long_id))
    await channel.send(_message(long_id))

    first, second = await fake.wait_for(2)
    assert first.collapse_key == second.collapse_key == long_id
    assert (
        first.apns_headers == second.apns_headers == {"apns-collapse-id": apns_collapse_id(long_id)}
    )
    assert len(first.apns_headers["apns-collapse-id"].encode()) == 64


def _dead(fake: FcmFake) -> None:
    fake.dead_tokens.add(TOKEN)


def _invalid(fake: FcmFake) -> None:
    fake.invalid_tokens.add(TOKEN)


def _next(
    failure: FcmFailure, retry_after: float | None = None, *, count: int = 1
) -> Callable[[FcmFake], None]:
    def inject(fake: FcmFake) -> None:
        fake.fail_next(count, failure, retry_after=retry_after)

    return inject


def _down(fake: FcmFake) -> None:
    fake.down = True


@dataclass(frozen=True)
class Failure:
    """One row of the mapping table, as seen through the real library."""

    name: str
    setup: Callable[[FcmFake], None]
    error: type[DeliveryError]
    code: str
    dead_recipient: bool = False
    retry_after: float | None = None
    #: sends FCM saw: one, except where google-auth itself retries
    requests_seen: int = 1


FAILURES = [
    Failure("dead-token", _dead, PermanentDeliveryError, "unregistered", dead_recipient=True),
    Failure("invalid-token", _invalid, PermanentDeliveryError, "invalid_argument"),
    Failure(
        "sender-id-mismatch",
        _next(FcmFailure.SENDER_ID_MISMATCH),
        PermanentDeliveryError,
        "sender_id_mismatch",
        dead_recipient=True,
    ),
    Failure(
        "quota+retry-after",
        _next(FcmFailure.QUOTA_EXCEEDED, 30),
        TransientDeliveryError,
        "quota_exceeded",
        retry_after=30.0,
    ),
    Failure("quota", _next(FcmFailure.QUOTA_EXCEEDED), TransientDeliveryError, "quota_exceeded"),
    Failure(
        "unavailable+retry-after",
        _next(FcmFailure.UNAVAILABLE, 7),
        TransientDeliveryError,
        "unavailable",
        retry_after=7.0,
    ),
    Failure("down", _down, TransientDeliveryError, "unavailable"),
    Failure("internal", _next(FcmFailure.INTERNAL), TransientDeliveryError, "internal"),
    # A 401 makes google-auth fetch a new token and try again, twice, before giving up.
    Failure(
        "apns-key",
        _next(FcmFailure.THIRD_PARTY_AUTH_ERROR, count=3),
        TransientDeliveryError,
        "third_party_auth",
        requests_seen=3,
    ),
]


@pytest.mark.parametrize("case", FAILURES, ids=lambda case: case.name)
async def test_fcm_errors_map_to_typed_delivery_errors_without_retries(
    channel: PushChannel, fake: FcmFake, case: Failure
) -> None:
    """Fast and without retries: the library's own 5-attempt, ~7 s retry of 500/503 (and
    its sleeping through Retry-After) is off, so the dispatcher's backoff decides."""
    case.setup(fake)
    started = time.perf_counter()
    with pytest.raises(case.error) as caught:
        await channel.send(_message())
    elapsed = time.perf_counter() - started

    exc = caught.value
    assert exc.code == case.code
    if isinstance(exc, PermanentDeliveryError):
        assert exc.dead_recipient is case.dead_recipient
    else:
        assert isinstance(exc, TransientDeliveryError)
        assert exc.retry_after == case.retry_after
    assert fake.send_requests == case.requests_seen
    assert elapsed < FAST_S
    assert TOKEN not in str(exc) and "1042 has shipped" not in str(exc)
    assert exc.__cause__ is None and exc.__suppress_context__


async def test_many_sends_share_one_access_token(channel: PushChannel, fake: FcmFake) -> None:
    await asyncio.gather(*(channel.send(_message(f"n-{i}")) for i in range(200)))

    assert len(await fake.wait_for(200)) == 200
    assert fake.token_requests == 1


async def test_refused_credentials_are_transient_and_start_up_goes_on(
    make_channel: Callable[..., PushChannel], fake: FcmFake
) -> None:
    fake.refuse_grants = True
    channel = make_channel()
    await channel.start()

    with pytest.raises(TransientDeliveryError) as caught:
        await channel.send(_message())
    assert caught.value.code == "auth"
    assert fake.send_requests == 0


@pytest.fixture
def unreachable_token_uri(credentials: Path) -> Path:
    """The same key file, its ``token_uri`` pointing at a port nobody listens on."""
    info = json.loads(credentials.read_text())
    info["token_uri"] = f"http://127.0.0.1:{free_port()}/token"
    credentials.write_text(json.dumps(info))
    return credentials


async def test_an_unreachable_token_endpoint_is_transient(
    make_channel: Callable[..., PushChannel], unreachable_token_uri: Path
) -> None:
    channel = make_channel(credentials_file=unreachable_token_uri)
    await channel.start()

    with pytest.raises(TransientDeliveryError) as caught:
        await channel.send(_message())
    assert caught.value.code == "auth"


async def test_an_unreachable_fcm_is_transient_and_fast(
    make_channel: Callable[..., PushChannel],
) -> None:
    channel = make_channel(api_base=f"http://127.0.0.1:{free_port()}")
    await channel.start()

    started = time.perf_counter()
    with pytest.raises(TransientDeliveryError) as caught:
        await channel.send(_message())
    assert caught.value.code == "unavailable"
    assert time.perf_counter() - started < FAST_S


async def test_a_slow_fcm_times_out_as_transient(
    make_channel: Callable[..., PushChannel], fake: FcmFake
) -> None:
    channel = make_channel(timeout_s=0.3)
    await channel.start()
    fake.latency_s = 1.0

    started = time.perf_counter()
    with pytest.raises(TransientDeliveryError) as caught:
        await channel.send(_message())
    assert caught.value.code == "timeout"
    assert time.perf_counter() - started < 0.9
    assert fake.send_requests == 1


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"text": "x" * 1001}, "over_limit"),
        ({"subject": "t" * 121}, "over_limit"),
        ({"notification_id": "n" * 4000}, "over_limit"),
        ({"to": " "}, "invalid_argument"),
        ({"text": " "}, "invalid_message"),
    ],
    ids=["body", "title", "data", "no-token", "no-body"],
)
async def test_unsendable_messages_are_refused_before_fcm(
    channel: PushChannel, fake: FcmFake, fields: dict[str, Any], code: str
) -> None:
    message = _message(**{"notification_id": "n-1", **fields})
    with pytest.raises(PermanentDeliveryError) as caught:
        await channel.send(message)
    assert caught.value.code == code
    assert fake.send_requests == 0


async def test_a_file_that_is_not_a_service_account_is_a_config_error(
    make_channel: Callable[..., PushChannel], tmp_path: Path
) -> None:
    path = tmp_path / "not-a-key.json"
    path.write_text(json.dumps({"type": "authorized_user"}))
    with pytest.raises(ConfigError, match="NOTIFIER_FCM_CREDENTIALS_FILE"):
        await make_channel(credentials_file=path).start()


async def test_send_before_start_fails_loudly(make_channel: Callable[..., PushChannel]) -> None:
    with pytest.raises(RuntimeError, match="start"):
        await make_channel().send(_message())


LOCAL_HOSTS = {"127.0.0.1"}


@pytest.fixture
def contacted(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every host name resolved or address connected to, from any thread; others blocked."""
    hosts: set[str] = set()
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        hosts.add(name)
        if name not in LOCAL_HOSTS:
            raise socket.gaierror(socket.EAI_NONAME, f"test blocked a lookup of {name}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock: socket.socket, address: Any) -> None:
        if isinstance(address, tuple):
            hosts.add(str(address[0]))
        real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return hosts


#: google-auth 2.63 made the regional-access-boundary lookup opt-in through this variable
BOUNDARY_LOOKUP_VARIABLE = "GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED"


@pytest.fixture
def boundary_lookup_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup switched on, as on google-auth 2.62 where it always runs.

    2.63 looks up only when ``BOUNDARY_LOOKUP_VARIABLE`` is true; 2.62 ignores the
    variable and looks up anyway. Set, both versions try the lookup, so the two tests
    below prove the same thing on either: without it, on 2.63, the first would pass
    even if our credential lost its override, and the second could not pass at all.
    """
    monkeypatch.setenv(BOUNDARY_LOOKUP_VARIABLE, "true")


@pytest.mark.usefixtures("boundary_lookup_on")
async def test_start_and_send_contact_no_host_but_127_0_0_1(
    fake: FcmFake, credentials: Path, contacted: set[str]
) -> None:
    channel = PushChannel(
        credentials_file=credentials, api_base=fake.base_url, timeout_s=2.0, max_workers=4
    )
    await channel.start()
    try:
        await asyncio.gather(*(channel.send(_message(f"n-{i}")) for i in range(10)))
        # The regional-access-boundary lookup would run on a thread after the refresh.
        await asyncio.sleep(0.5)
    finally:
        await channel.close()

    assert fake.token_requests == 1
    assert contacted == LOCAL_HOSTS


@pytest.mark.usefixtures("boundary_lookup_on")
async def test_the_recorder_does_catch_the_boundary_lookup_of_a_plain_credential(
    fake: FcmFake, credentials: Path, contacted: set[str]
) -> None:
    """The control for the test above: google-auth's own service account, refreshed the
    same way, does reach out to iamcredentials.googleapis.com from a background thread."""
    plain = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
        str(credentials), scopes=[FCM_SCOPE]
    )

    def authorize() -> None:
        with requests.Session() as session:
            plain.before_request(AuthRequest(session), "POST", fake.base_url, {})

    await asyncio.to_thread(authorize)
    await wait_until(lambda: "iamcredentials.googleapis.com" in contacted)


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment without proxy variables (either case), for a test to set its own."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


async def test_sends_go_through_the_proxy_the_environment_names(
    make_channel: Callable[..., PushChannel],
    fake: FcmFake,
    no_proxy_variables: pytest.MonkeyPatch,
    contacted: set[str],
) -> None:
    """The proxy variables are read once, at start, and still honoured: FCM's host is
    never resolved here, the proxy (the fake, which serves a request passed on in
    absolute form like any other) gets the send, and NO_PROXY keeps the token endpoint
    direct. Changing the variables later changes nothing: they were read at start."""
    no_proxy_variables.setenv("HTTP_PROXY", fake.base_url)
    no_proxy_variables.setenv("NO_PROXY", "127.0.0.1")
    channel = make_channel(api_base="http://fcm.invalid")
    await channel.start()
    no_proxy_variables.delenv("HTTP_PROXY")

    await channel.send(_message("n-proxy"))

    [pushed] = await fake.wait_for(1)
    assert pushed.data["notification_id"] == "n-proxy"
    assert fake.token_requests == 1
    assert contacted == LOCAL_HOSTS


async def test_a_netrc_entry_for_the_fcm_host_does_not_replace_the_access_token(
    make_channel: Callable[..., PushChannel],
    fake: FcmFake,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``requests`` would look ``~/.netrc`` up on every send and put its login in the
    Authorization header, over the OAuth bearer token; the session reads no netrc."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-a-token\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    channel = make_channel()
    await channel.start()

    await channel.send(_message("n-netrc"))

    [pushed] = await fake.wait_for(1)
    assert pushed.data["notification_id"] == "n-netrc"
