"""A small pool of reused SMTP connections (aiosmtplib has none of its own): the
session side of the email channel.

Why a pool: a new connection per message pays TCP, TLS, EHLO and AUTH every time
(measured ~360 msg/s plain and ~166 msg/s STARTTLS+AUTH, against ~830 and ~1,130 for a
pool of 4; see FACTS.md). Connections open on first use; one the server closed while
idle is replaced, and a send that finds its pooled connection dead mid-way is tried
once more on a new one (the channel derives the Message-ID from the notification id,
so a message that this delivers twice is recognisably the same). A connection the
server answered on (a refusal of this message) is kept; one that failed or was
cancelled mid-conversation is dropped, as its state is unknown.

Failing to open a session is a :class:`TransientDeliveryError` (``connect``, or
``smtp-<code>`` when the server refused it, credentials included: every message would
fail the same way until an operator fixes them); what the conversation raises after
that is aiosmtplib's, for the channel to classify.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib

from notifier.config import SmtpTls
from notifier.errors import TransientDeliveryError

log = logging.getLogger(__name__)

#: replies that mean "our credentials or TLS setup are wrong", not "this message is bad"
AUTH_REPLY_CODES = frozenset({530, 534, 535})
#: the server answered: the connection is still good for the next message
_ANSWERED = (
    aiosmtplib.SMTPRecipientsRefused,
    aiosmtplib.SMTPResponseException,
    aiosmtplib.SMTPNotSupported,
)


@dataclass(frozen=True, slots=True)
class SmtpRelay:
    """Where and how to connect: one relay, its TLS mode and credentials."""

    host: str
    port: int
    tls: SmtpTls
    username: str | None
    password: str | None
    timeout_s: float
    tls_context: ssl.SSLContext | None = None

    @property
    def where(self) -> str:
        """``host:port``, for error messages."""
        return f"{self.host}:{self.port}"


class SmtpPool:
    """Up to ``size`` connections to one relay, each carrying one message at a time."""

    def __init__(self, relay: SmtpRelay, size: int) -> None:
        self._relay = relay
        self._size = size
        self._slots: asyncio.LifoQueue[_Slot] = asyncio.LifoQueue()
        for _ in range(size):
            self._slots.put_nowait(_Slot())

    async def send(
        self, mime: EmailMessage, *, sender: str, recipient: str, notification_id: str
    ) -> None:
        """Send ``mime`` on a pooled connection; raises aiosmtplib's errors (and
        ``OSError``) as they come, or :class:`TransientDeliveryError` when no session
        opens."""
        # LIFO: a quiet service keeps reusing one warm connection instead of rotating
        # through all of them and letting the server time each one out.
        slot = await self._slots.get()
        try:
            await self._deliver(slot, mime, sender, recipient, notification_id)
        except _ANSWERED:
            raise
        except BaseException:
            slot.discard()
            raise
        finally:
            self._slots.put_nowait(slot)

    async def close(self) -> None:
        """Wait for in-flight sends, then QUIT every connection."""
        slots = [await self._slots.get() for _ in range(self._size)]
        await asyncio.gather(*(slot.quit() for slot in slots))

    async def _deliver(
        self, slot: _Slot, mime: EmailMessage, sender: str, recipient: str, notification_id: str
    ) -> None:
        client = slot.live_client()
        reused = client is not None
        if client is None:
            client = await self._reconnect(slot)
        try:
            await client.send_message(mime, sender=sender, recipients=[recipient])
        except aiosmtplib.SMTPServerDisconnected:
            if not reused:
                raise
            log.info(
                "pooled SMTP connection was closed by the server; "
                "retrying notification %s once on a new connection",
                notification_id,
            )
            client = await self._reconnect(slot)
            await client.send_message(mime, sender=sender, recipients=[recipient])

    async def _reconnect(self, slot: _Slot) -> aiosmtplib.SMTP:
        slot.discard()
        relay = self._relay
        client = aiosmtplib.SMTP(
            hostname=relay.host,
            port=relay.port,
            username=relay.username,
            password=relay.password,
            timeout=relay.timeout_s,
            use_tls=relay.tls is SmtpTls.TLS,
            start_tls=relay.tls is SmtpTls.STARTTLS,
            tls_context=relay.tls_context,
        )
        try:
            await client.connect()
        except aiosmtplib.SMTPResponseException as exc:
            if isinstance(exc, aiosmtplib.SMTPAuthenticationError) or exc.code in AUTH_REPLY_CODES:
                message = (
                    f"SMTP server {relay.where} refused our credentials ({exc.code}); fix "
                    "NOTIFIER_SMTP_USERNAME / NOTIFIER_SMTP_PASSWORD, messages stay queued"
                )
            else:
                message = f"SMTP server {relay.where} refused the session: {exc.code} {exc.message}"
            raise TransientDeliveryError(message, code=f"smtp-{exc.code}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise TransientDeliveryError(
                f"cannot reach SMTP server {relay.where}: {exc}", code="connect"
            ) from exc
        slot.client = client
        return client


@dataclass
class _Slot:
    """One place in the pool; holds a client once a send has needed one."""

    client: aiosmtplib.SMTP | None = None

    def live_client(self) -> aiosmtplib.SMTP | None:
        """The client if its connection is still open (the server may close idle ones)."""
        if self.client is not None and self.client.is_connected:
            return self.client
        return None

    def discard(self) -> None:
        """Drop the connection without a goodbye; the next send opens a new one."""
        if self.client is not None:
            self.client.close()
            self.client = None

    async def quit(self) -> None:
        """Say QUIT politely; a server that is already gone needs nothing more."""
        client, self.client = self.client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()
