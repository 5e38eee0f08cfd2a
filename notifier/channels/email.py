"""Email over SMTP (aiosmtplib), through a small pool of reused connections
(``smtp_pool``: why a pool, and how its connections are kept and replaced).

A send that finds its pooled connection dead mid-way is tried once more on a new one.
That retry can deliver a message twice if the server dropped us after accepting it, so
the Message-ID is derived from the notification id: a duplicate is recognisably the
same message.

How failures map (the caller never sees an aiosmtplib error):

    cannot connect, TLS or EHLO fails, timeout, disconnect   TransientDeliveryError
    AUTH refused (530/534/535)                               TransientDeliveryError
    4xx reply to MAIL, RCPT or DATA                          TransientDeliveryError
    5xx reply to MAIL, RCPT or DATA                          PermanentDeliveryError
    the server cannot carry it (non-ASCII address)           PermanentDeliveryError
    the message itself is unusable (no subject, bad "to")    PermanentDeliveryError

Error codes: ``connect``, ``timeout``, ``disconnect``, ``smtp-<reply code>``,
``smtp-unsupported``, ``no-subject``, ``invalid-address``, ``invalid-message``.

Refused credentials stay transient because every message would fail the same way
until an operator fixes them; dropping them all as permanent would lose them.

The message itself (headers, bodies, Message-ID) is composed in ``email_mime``, the
connections are ``smtp_pool``'s; this module is the channel: its settings, the sender
of each message, and how the conversation's failures map.
"""

from __future__ import annotations

import logging
import re
import ssl
from email.utils import parseaddr
from pathlib import Path
from typing import ClassVar

import aiosmtplib

from notifier.channels import email_mime
from notifier.channels.base import ChannelPlugin, OutboundMessage, SendLimits, SendReceipt
from notifier.channels.smtp_pool import AUTH_REPLY_CODES, SmtpPool, SmtpRelay
from notifier.config import Settings, SmtpTls
from notifier.contracts.channels import ChannelSpec, SenderAddress, SenderPicker, TemplateParts
from notifier.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)

log = logging.getLogger(__name__)

#: Message-ID domain when neither message_id_domain nor from_addr gives one
FALLBACK_MESSAGE_ID_DOMAIN = "notifier.local"
#: distinct store senders remembered (one per store in the stores file)
_MAX_ORIGINS = 1024

_ADDRESS_IN_TEXT = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")


class EmailChannel:
    """The ``email`` channel: one SMTP relay, up to ``pool_size`` sends in parallel."""

    name: ClassVar[str] = "email"
    provider: ClassVar[str] = "smtp"
    breaker_per_recipient: ClassVar[bool] = False

    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: SmtpTls,
        username: str | None,
        password: str | None,
        ca_file: Path | None,
        from_addr: str,
        timeout_s: float,
        pool_size: int,
        message_id_domain: str | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._tls = tls
        self._username = username
        self._password = password
        self._ca_file = ca_file
        self._from_addr = from_addr
        self._timeout_s = timeout_s
        self._pool_size = pool_size
        self._sender = parseaddr(from_addr)[1]
        sender_domain = self._sender.rpartition("@")[2] if "@" in self._sender else ""
        self._message_id_domain = message_id_domain or sender_domain or FALLBACK_MESSAGE_ID_DOMAIN
        self._explicit_domain = message_id_domain
        #: a store's sender → (From, envelope sender, Message-ID domain)
        self._origins: dict[str, tuple[str, str, str]] = {}
        self._pool: SmtpPool | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailChannel:
        """Build the channel from ``NOTIFIER_SMTP_*``; refuses when no SMTP host is set."""
        if settings.smtp_host is None:
            raise ConfigError("NOTIFIER_SMTP_HOST is not set; the email channel needs a relay")
        password = settings.smtp_password
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=password.get_secret_value() if password is not None else None,
            ca_file=settings.smtp_ca_file,
            from_addr=settings.smtp_from,
            timeout_s=settings.smtp_timeout_s,
            pool_size=settings.smtp_pool_size,
        )

    async def start(self) -> None:
        """Check the configuration and load the CA file; connections open on first send."""
        if self._pool is not None:
            raise RuntimeError("EmailChannel is already running")
        self._validate()
        relay = SmtpRelay(
            host=self._host,
            port=self._port,
            tls=self._tls,
            username=self._username,
            password=self._password,
            timeout_s=self._timeout_s,
            tls_context=self._load_tls_context(),
        )
        self._pool = SmtpPool(relay, self._pool_size)

    async def send(self, message: OutboundMessage) -> SendReceipt:
        """Send one message on a pooled connection; raises a typed error, never returns False."""
        if self._pool is None:
            raise RuntimeError("EmailChannel is not running: call start() first")
        pool = self._pool
        from_addr, sender, domain = self._origin(message.sender)
        message_id = email_mime.message_id(message.notification_id, domain)
        mime, recipient = email_mime.compose(
            message, from_addr=from_addr, message_id=message_id, reply_to=message.reply_to
        )
        try:
            await pool.send(
                mime,
                sender=sender or self._sender,
                recipient=recipient,
                notification_id=message.notification_id,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # `from None`: the library's exception carries the recipient address.
            raise _recipients_refused(exc) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _reply_error(exc.code, exc.message, _refused_what(exc)) from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise PermanentDeliveryError(
                f"the SMTP server cannot take this message: {exc.message}", code="smtp-unsupported"
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # the pool has dropped the connection
            timed_out = isinstance(exc, aiosmtplib.SMTPTimeoutError)
            raise TransientDeliveryError(
                f"SMTP conversation with {self._host}:{self._port} failed: {exc}",
                code="timeout" if timed_out else "disconnect",
            ) from exc
        return SendReceipt(provider=self.provider, provider_message_id=message_id)

    async def close(self) -> None:
        """Wait for in-flight sends, then QUIT every pooled connection."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def message_id_for(self, notification_id: str, sender: str | None = None) -> str:
        """``<notification-id@domain>``: the same for every attempt at one notification;
        the domain is ``message_id_domain``, else that of the message's sender."""
        return email_mime.message_id(notification_id, self._origin(sender)[2])

    def _origin(self, sender: str | None) -> tuple[str, str, str]:
        """(``From``, envelope sender, Message-ID domain) of a message from ``sender`` (a
        store's ``email_from``, validated when the stores file was loaded), or from the
        channel's own address. Worked out once per sender."""
        if sender is None:
            return self._from_addr, self._sender, self._message_id_domain
        found = self._origins.get(sender)
        if found is None:
            address = parseaddr(sender)[1]
            domain = self._explicit_domain or address.rpartition("@")[2]
            found = (sender, address, domain or self._message_id_domain)
            if len(self._origins) < _MAX_ORIGINS:
                self._origins[sender] = found
        return found

    def _validate(self) -> None:
        problems: list[str] = []
        if not self._host or any(c.isspace() for c in self._host):
            problems.append("host is empty or contains whitespace")
        if not 1 <= self._port <= 65535:
            problems.append(f"port {self._port} is outside 1-65535")
        if self._timeout_s <= 0:
            problems.append("timeout_s must be > 0")
        if self._pool_size < 1:
            problems.append("pool_size must be >= 1")
        if (self._username is None) != (self._password is None):
            problems.append("set both username and password, or neither")
        if "@" not in self._sender:
            problems.append("from_addr has no email address")
        if email_mime.CONTROL.search(self._from_addr):
            problems.append("from_addr holds a control character")
        if not re.fullmatch(r"[A-Za-z0-9.-]+", self._message_id_domain):
            problems.append(
                f"Message-ID domain {self._message_id_domain!r} (message_id_domain or the "
                "from_addr domain) must be ASCII letters, digits, dots and hyphens"
            )
        if problems:
            raise ConfigError("email channel: " + "; ".join(problems))

    def _load_tls_context(self) -> ssl.SSLContext | None:
        if self._ca_file is None or self._tls is SmtpTls.NONE:
            return None
        try:
            return ssl.create_default_context(cafile=str(self._ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"email channel: cannot load ca_file {self._ca_file}: {exc}") from exc


def _refused_what(exc: aiosmtplib.SMTPResponseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return "sender refused"
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return "message refused"
    return "SMTP server replied"


def _recipients_refused(exc: aiosmtplib.SMTPRecipientsRefused) -> DeliveryError:
    refusals = exc.recipients
    permanent = [r for r in refusals if not 400 <= r.code < 500]
    worst = permanent[0] if permanent else refusals[0]
    return _reply_error(worst.code, worst.message, "recipient refused")


def _reply_error(code: int, text: str, what: str) -> DeliveryError:
    """Map one SMTP reply to a delivery error; the reply text is kept, addresses are not."""
    detail = f"{what}: {code} {_ADDRESS_IN_TEXT.sub('<address>', text)}"
    if code in AUTH_REPLY_CODES:
        return TransientDeliveryError(
            f"{detail} (check the SMTP credentials and TLS setting; messages stay queued)",
            code=f"smtp-{code}",
        )
    if 500 <= code < 600:
        return PermanentDeliveryError(detail, code=f"smtp-{code}")
    return TransientDeliveryError(detail, code=f"smtp-{code}")


def _limits(settings: Settings) -> SendLimits:
    # one send per pooled connection: the pool size is the concurrency
    return SendLimits(concurrency=settings.smtp_pool_size, rate_per_s=settings.email_rate_per_s)


def _store_sender(_settings: Settings) -> SenderPicker:
    return lambda store: SenderAddress(store.email_from, store.reply_to)


PLUGIN = ChannelPlugin(
    spec=ChannelSpec(
        name=EmailChannel.name,
        parts=TemplateParts(subject="subject", text="text", html="html"),
        recipient=lambda customer: customer.email,
        contact="email",
    ),
    requires=("smtp_host",),
    build=EmailChannel.from_settings,
    limits=_limits,
    alerts_to="alert_email",
    sender=_store_sender,
)
