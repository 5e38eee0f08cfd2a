"""EmailChannel against real aiosmtpd servers on this loop: no SMTP fakes of our own."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from notifier.channels.base import OutboundMessage
from notifier.channels.email import EmailChannel
from notifier.config import Settings, SmtpTls
from notifier.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from tests.support import free_port

CUSTOMER = "ada@example.org"
HOST = "127.0.0.1"


@dataclass
class Received:
    """One message as the server took it, with how the session was secured."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    authenticated: bool


def _answer(reply: str) -> Callable[..., Awaitable[str]]:
    async def hook(*_: Any) -> str:
        return reply

    return hook


class Recorder:
    """aiosmtpd handler keeping every message; ``replies`` makes commands answer an error."""

    def __init__(self, replies: dict[str, str] | None = None) -> None:
        self.received: list[Received] = []
        self.quits = 0
        for command, reply in (replies or {}).items():
            setattr(self, f"handle_{command}", _answer(reply))

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parser = BytesParser(_class=EmailMessage, policy=policy.default)
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                message=parser.parsebytes(envelope.original_content),
                tls=server.transport.get_extra_info("sslcontext") is not None,
                authenticated=bool(session.authenticated),
            )
        )
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quits += 1
        return "221 Bye"


class InLoopSmtp:
    """An aiosmtpd server on the test's loop that counts the connections it accepts."""

    def __init__(
        self, handler: Recorder, *, ssl_context: ssl.SSLContext | None = None, **smtp: Any
    ) -> None:
        self.handler = handler
        self.connections = 0
        self.port = 0
        self._ssl = ssl_context
        self._smtp = {"hostname": "localhost", **smtp}
        self._sessions: list[Any] = []
        self._server: asyncio.Server | None = None

    def _new_session(self) -> Any:
        self.connections += 1
        session = SMTP(self.handler, **self._smtp)
        self._sessions.append(session)
        return session

    def hang_up(self) -> None:
        """Close every open connection from the server side, as an idle timeout would."""
        for session in self._sessions:
            if session.transport is not None:
                session.transport.close()

    async def __aenter__(self) -> InLoopSmtp:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_session, HOST, 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.hang_up()
        await self._server.wait_closed()


def make_channel(port: int = 25, **overrides: Any) -> EmailChannel:
    options: dict[str, Any] = {
        "host": HOST,
        "port": port,
        "tls": SmtpTls.NONE,
        "username": None,
        "password": None,
        "ca_file": None,
        "from_addr": "Shop <orders@shop.example>",
        "timeout_s": 2.0,
        "pool_size": 2,
        **overrides,
    }
    return EmailChannel(**options)


@asynccontextmanager
async def running(channel: EmailChannel) -> AsyncIterator[EmailChannel]:
    await channel.start()
    try:
        yield channel
    finally:
        await channel.close()


def outbound(notification_id: str = "n-1", **overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "notification_id": notification_id,
        "channel": "email",
        "to": f"Ada Lovelace <{CUSTOMER}>",
        "subject": "Ihre Bestellung ist unterwegs, Größe M",
        "text": "Hallo Ada, Ihr Paket ist unterwegs.",
        "html": "<p>Hallo Ada, Ihr Paket ist <b>unterwegs</b>.</p>",
        "locale": "de_DE",
        **overrides,
    }
    return OutboundMessage(**fields)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost/127.0.0.1, made now (``cryptography`` is absent)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def only_user_secret(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"user", b"secret")
    return AuthResult(success=ok, handled=False)


async def test_send_delivers_text_and_html_with_headers() -> None:
    async with InLoopSmtp(Recorder()) as server, running(make_channel(server.port)) as channel:
        receipt = await channel.send(outbound())

    (got,) = server.handler.received
    mail = got.message
    assert (got.mail_from, got.rcpt_tos) == ("orders@shop.example", [CUSTOMER])
    assert mail["From"] == "Shop <orders@shop.example>"
    assert mail["To"] == f"Ada Lovelace <{CUSTOMER}>"
    assert mail["Subject"] == "Ihre Bestellung ist unterwegs, Größe M"
    assert mail["Content-Language"] == "de-DE"
    assert mail["Date"].datetime is not None
    assert mail.get_content_type() == "multipart/alternative"
    text, html = (part for part in mail.iter_parts())
    assert (text.get_content_type(), text.get_content_charset()) == ("text/plain", "utf-8")
    assert text.get_content().strip() == "Hallo Ada, Ihr Paket ist unterwegs."
    assert html.get_content_type() == "text/html"
    assert "<b>unterwegs</b>" in html.get_content()
    assert receipt.provider == "smtp"
    assert receipt.provider_message_id == mail["Message-ID"] == "<n-1@shop.example>"


async def test_send_without_html_is_plain_text() -> None:
    async with InLoopSmtp(Recorder()) as server, running(make_channel(server.port)) as channel:
        await channel.send(outbound(html=None))

    mail = server.handler.received[0].message
    assert not mail.is_multipart()
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content_charset() == "utf-8"


async def test_message_id_is_the_same_for_every_attempt_at_one_notification() -> None:
    async with InLoopSmtp(Recorder()) as server, running(make_channel(server.port)) as channel:
        first = await channel.send(outbound("n-42"))
        second = await channel.send(outbound("n-42"))
        other = await channel.send(outbound("n-43"))

    ids = [r.message["Message-ID"] for r in server.handler.received]
    assert ids == [first.provider_message_id, second.provider_message_id, other.provider_message_id]
    assert ids[0] == ids[1] == "<n-42@shop.example>" != ids[2]


@pytest.mark.parametrize(
    ("overrides", "notification_id", "expected"),
    [
        ({"message_id_domain": "mail.shop.example"}, "n-1", "<n-1@mail.shop.example>"),
        ({"from_addr": "orders"}, "n-1", "<n-1@notifier.local>"),
        ({}, "ord/7 ü", "<ord=2F7=20=C3=BC@shop.example>"),
    ],
)
def test_message_id_domain_and_odd_characters(
    overrides: dict[str, Any], notification_id: str, expected: str
) -> None:
    assert make_channel(**overrides).message_id_for(notification_id) == expected


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "<n-1@acme.example>"),  # a store's sender names its own Message-IDs
        ({"message_id_domain": "mail.shop.example"}, "<n-1@mail.shop.example>"),  # unless set
    ],
)
def test_a_store_sender_gives_its_domain_to_the_message_id(
    overrides: dict[str, Any], expected: str
) -> None:
    channel = make_channel(**overrides)
    assert channel.message_id_for("n-1", "Acme <orders@acme.example>") == expected
    assert channel.message_id_for("n-1", None) == make_channel(**overrides).message_id_for("n-1")


async def test_connections_are_reused_across_sends() -> None:
    async with InLoopSmtp(Recorder()) as server, running(make_channel(server.port)) as channel:
        await asyncio.gather(*(channel.send(outbound(f"n-{i}")) for i in range(20)))
        assert server.connections <= 2
        for i in range(20, 40):
            await channel.send(outbound(f"n-{i}"))
        assert server.connections <= 2

    assert len(server.handler.received) == 40
    assert server.handler.quits == server.connections


async def test_one_at_a_time_keeps_to_one_connection() -> None:
    async with InLoopSmtp(Recorder()) as server, running(make_channel(server.port)) as channel:
        for i in range(10):
            await channel.send(outbound(f"n-{i}"))

    assert server.connections == 1


async def test_starttls_then_auth(certificate: tuple[Path, Path]) -> None:
    smtp: dict[str, Any] = {
        "tls_context": server_tls(certificate),
        "require_starttls": True,
        "auth_required": True,
        "authenticator": only_user_secret,
    }
    async with InLoopSmtp(Recorder(), **smtp) as server:
        channel = make_channel(
            server.port,
            tls=SmtpTls.STARTTLS,
            username="user",
            password="secret",
            ca_file=certificate[0],
        )
        async with running(channel):
            await channel.send(outbound())

    (got,) = server.handler.received
    assert got.tls and got.authenticated


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_implicit_tls_with_auth(certificate: tuple[Path, Path]) -> None:
    # aiosmtpd counts only STARTTLS as TLS; this socket is TLS from the first byte.
    smtp: dict[str, Any] = {
        "auth_required": True,
        "auth_require_tls": False,
        "authenticator": only_user_secret,
    }
    async with InLoopSmtp(Recorder(), ssl_context=server_tls(certificate), **smtp) as server:
        channel = make_channel(
            server.port, tls=SmtpTls.TLS, username="user", password="secret", ca_file=certificate[0]
        )
        async with running(channel):
            await channel.send(outbound())

    (got,) = server.handler.received
    assert got.tls and got.authenticated


async def test_untrusted_certificate_is_transient(certificate: tuple[Path, Path]) -> None:
    async with (
        InLoopSmtp(Recorder(), ssl_context=server_tls(certificate)) as server,
        running(make_channel(server.port, tls=SmtpTls.TLS)) as channel,
    ):
        with pytest.raises(TransientDeliveryError) as caught:
            await channel.send(outbound())

    assert caught.value.code == "connect"


async def test_refused_credentials_are_transient_and_say_so(certificate: tuple[Path, Path]) -> None:
    smtp: dict[str, Any] = {
        "tls_context": server_tls(certificate),
        "auth_required": True,
        "authenticator": only_user_secret,
    }
    async with InLoopSmtp(Recorder(), **smtp) as server:
        channel = make_channel(
            server.port,
            tls=SmtpTls.STARTTLS,
            username="user",
            password="wrong",
            ca_file=certificate[0],
        )
        async with running(channel):
            with pytest.raises(TransientDeliveryError) as caught:
                await channel.send(outbound())

    assert caught.value.code == "smtp-535"
    assert "credentials" in str(caught.value)
    assert server.handler.received == []


@pytest.mark.parametrize(
    ("command", "reply", "error", "code"),
    [
        ("RCPT", f"550 5.1.1 <{CUSTOMER}>: Unknown user", PermanentDeliveryError, "smtp-550"),
        ("RCPT", "451 4.3.0 Try again later", TransientDeliveryError, "smtp-451"),
        ("RCPT", "452 4.2.2 Mailbox full", TransientDeliveryError, "smtp-452"),
        ("MAIL", "553 5.7.1 Sender not allowed", PermanentDeliveryError, "smtp-553"),
        ("MAIL", "421 4.3.2 Shutting down", TransientDeliveryError, "smtp-421"),
        ("DATA", "554 5.6.0 Message refused", PermanentDeliveryError, "smtp-554"),
        ("DATA", "451 4.7.1 Greylisted", TransientDeliveryError, "smtp-451"),
    ],
)  # fmt: skip
async def test_smtp_replies_map_to_typed_errors(
    command: str, reply: str, error: type[Exception], code: str
) -> None:
    async with (
        InLoopSmtp(Recorder({command: reply})) as server,
        running(make_channel(server.port)) as channel,
    ):
        with pytest.raises(error) as caught:
            await channel.send(outbound())

    assert getattr(caught.value, "code", None) == code
    assert CUSTOMER not in str(caught.value)
    assert caught.value.__cause__ is None


class RefuseFirstRecipient(Recorder):
    """Answers 550 to the first RCPT only, on whatever connection it arrives."""

    refused = False

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if not self.refused:
            self.refused = True
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def test_a_refused_message_leaves_the_connection_usable() -> None:
    handler = RefuseFirstRecipient()
    async with InLoopSmtp(handler) as server, running(make_channel(server.port)) as channel:
        with pytest.raises(PermanentDeliveryError):
            await channel.send(outbound("n-1"))
        await channel.send(outbound("n-2"))

    assert len(handler.received) == 1
    assert server.connections == 1


async def test_nothing_listening_is_transient_and_quick() -> None:
    channel = make_channel(free_port(), timeout_s=0.5)
    started = time.monotonic()
    async with running(channel):
        with pytest.raises(TransientDeliveryError) as caught:
            await channel.send(outbound())

    assert caught.value.code == "connect"
    assert time.monotonic() - started < 2


async def test_a_server_that_never_greets_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        async with running(make_channel(port, timeout_s=0.3)) as channel:
            with pytest.raises(TransientDeliveryError) as caught:
                await channel.send(outbound())
    finally:
        server.close()
    assert caught.value.code == "connect"
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("notice_first", [True, False], ids=["idle-close-noticed", "mid-send"])
async def test_reconnects_after_the_server_hangs_up(
    notice_first: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="notifier")
    async with InLoopSmtp(Recorder()) as server, running(make_channel(server.port)) as channel:
        await channel.send(outbound("n-1"))
        server.hang_up()
        if notice_first:
            await asyncio.sleep(0.05)
        await channel.send(outbound("n-2"))

    assert [r.message["Message-ID"] for r in server.handler.received] == [
        "<n-1@shop.example>",
        "<n-2@shop.example>",
    ]
    assert server.connections == 2
    retried = "retrying notification n-2" in caplog.text
    assert retried is not notice_first
    assert CUSTOMER not in caplog.text


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"subject": None}, "no-subject"),
        ({"to": "ada@example.org, bob@example.org"}, "invalid-address"),
        ({"to": "not an address"}, "invalid-address"),
        ({"to": "ada@example.org\r\nBcc: eve@example.org"}, "invalid-address"),
        ({"subject": "hi\r\nBcc: eve@example.org"}, "invalid-message"),
        # control characters the contract would have stripped: refused before any send
        ({"subject": "Your order\x00 has shipped"}, "invalid-message"),
        ({"to": "ada@example.org\x00"}, "invalid-address"),
    ],
)
async def test_unusable_messages_are_permanent(overrides: dict[str, Any], code: str) -> None:
    async with running(make_channel(free_port())) as channel:
        with pytest.raises(PermanentDeliveryError) as caught:
            await channel.send(outbound(**overrides))
    assert caught.value.code == code


@pytest.mark.parametrize(
    "overrides",
    [
        {"host": ""},
        {"port": 0},
        {"timeout_s": 0},
        {"pool_size": 0},
        {"username": "user"},
        {"from_addr": "Shop"},
        {"from_addr": "Shop\x1b <orders@shop.example>"},
        {"tls": SmtpTls.TLS, "ca_file": Path("/nonexistent/ca.pem")},
    ],
)
async def test_start_refuses_bad_configuration(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        await make_channel(**overrides).start()


async def test_send_before_start_fails_loudly() -> None:
    with pytest.raises(RuntimeError, match="start"):
        await make_channel().send(outbound())


def test_from_settings(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: []\n")
    with pytest.raises(ConfigError, match="NOTIFIER_SMTP_HOST"):
        EmailChannel.from_settings(Settings(rules_file=rules, templates_dir=tmp_path))

    settings = Settings(
        rules_file=rules,
        templates_dir=tmp_path,
        smtp_host="mail.example",
        smtp_from="Orders <orders@shop.example>",
    )
    channel = EmailChannel.from_settings(settings)
    assert (channel.name, channel.provider) == ("email", "smtp")
    assert channel.message_id_for("n-1") == "<n-1@shop.example>"
