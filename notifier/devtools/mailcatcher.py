"""A local SMTP server that keeps what it receives, so a newcomer sees what customers get.

``notifier dev`` points the email channel at it and mounts :func:`outbox_router`, so
``GET /dev/outbox`` shows each email as sent. It serves from the *current* asyncio
loop (``loop.create_server``), not from aiosmtpd's threaded ``Controller``: the service
process and async tests then share one loop, and :meth:`MailCatcher.wait_for` can
await an arrival instead of polling another thread. Development only: it accepts
anything from anyone and keeps the last :data:`MAX_MESSAGES` in memory.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Annotated, Any

from aiosmtpd.smtp import SMTP
from fastapi import APIRouter, Query, Request, Response

from notifier.devtools.devpages import FORMAT_QUERY, wants_html

#: how many messages the catcher keeps; older ones fall off the front
MAX_MESSAGES = 1000
#: the headers worth showing next to the body (``From`` as the customer sees it, with the
#: shop's display name; the envelope sender is ``mail_from``)
SHOWN_HEADERS = ("Message-ID", "Date", "Content-Language", "From", "Reply-To")
#: the name in the 220 banner; given explicitly so aiosmtpd does no DNS lookup per connection
BANNER_HOSTNAME = "notifier-mailcatcher"


@dataclass(frozen=True, slots=True)
class CaughtMessage:
    """One email as the customer would have received it (envelope, subject, both bodies)."""

    message_id: str
    mail_from: str
    rcpt_tos: list[str]
    subject: str
    text: str
    html: str | None
    #: when the catcher received it, ISO 8601 in UTC
    received_at: str
    headers: dict[str, str]

    @classmethod
    def parse(cls, raw: bytes, *, mail_from: str, rcpt_tos: list[str]) -> CaughtMessage:
        """Read a message as it came off the wire (``DATA``), with the stdlib parser."""
        parsed = BytesParser(_class=EmailMessage, policy=policy.default).parsebytes(raw)
        return cls(
            message_id=str(parsed.get("Message-ID", "")),
            mail_from=mail_from,
            rcpt_tos=rcpt_tos,
            subject=str(parsed.get("Subject", "")),
            text=_body(parsed, "plain") or "",
            html=_body(parsed, "html"),
            received_at=datetime.now(UTC).isoformat(),
            headers={name: str(parsed[name]) for name in SHOWN_HEADERS if name in parsed},
        )


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    return str(part.get_content())


class MailCatcher:
    """An SMTP server on this loop that keeps every message it is given."""

    def __init__(self, *, max_messages: int = MAX_MESSAGES) -> None:
        self._messages: deque[CaughtMessage] = deque(maxlen=max_messages)
        #: each message's bytes as they came off the wire, newest last: what a test of
        #: header folding reads (the parser unfolds headers)
        self.raw: deque[bytes] = deque(maxlen=max_messages)
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 = any free port) and return the port bound."""
        if self._server is not None:
            raise RuntimeError("MailCatcher is already running")
        loop = asyncio.get_running_loop()
        handler = _CatchingHandler(self)

        def new_session() -> Any:
            session = SMTP(handler, hostname=BANNER_HOSTNAME, enable_SMTPUTF8=True, loop=loop)
            self._sessions.add(session)
            return session

        self._server = await loop.create_server(new_session, host, port)
        return self.port

    async def stop(self) -> None:
        """Stop listening and hang up on connected clients (pooled senders stay connected)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        await server.wait_closed()

    @property
    def port(self) -> int:
        """The port bound by :meth:`start`; fails loudly before that."""
        if self._server is None:
            raise RuntimeError("MailCatcher is not running: call start() first")
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    def messages(self) -> list[CaughtMessage]:
        """Everything caught so far, newest last."""
        return list(self._messages)

    def clear(self) -> None:
        """Forget every caught message."""
        self._messages.clear()
        self.raw.clear()

    # The bound sits in the call because a test reads better that way.
    async def wait_for(self, count: int, timeout: float = 5.0) -> list[CaughtMessage]:  # noqa: ASYNC109
        """Wait until at least ``count`` messages are held; raises ``TimeoutError`` if not."""
        if count > (self._messages.maxlen or count):
            raise ValueError(f"the catcher keeps at most {self._messages.maxlen} messages")
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self._messages) >= count)
        return self.messages()

    async def _catch(self, message: CaughtMessage) -> None:
        async with self._arrived:
            self._messages.append(message)
            self._arrived.notify_all()


class _CatchingHandler:
    """The aiosmtpd handler: every ``DATA`` becomes a :class:`CaughtMessage`."""

    def __init__(self, catcher: MailCatcher) -> None:
        self._catcher = catcher

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        caught = CaughtMessage.parse(
            envelope.original_content or b"",
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
        )
        self._catcher.raw.append(envelope.original_content or b"")
        await self._catcher._catch(caught)
        return "250 OK: caught"


#: draws the outbox as an HTML page (``notifier dev`` passes one that shows every channel)
OutboxPage = Callable[[Request], Awaitable[Response]]


def outbox_router(catcher: MailCatcher, *, page: OutboxPage | None = None) -> APIRouter:
    """``GET /dev/outbox`` lists caught mail (``?to=``, ``?limit=`` newest), ``DELETE`` clears.

    With ``page``, a browser (``Accept: text/html`` first) or ``?format=html`` gets that
    page instead; ``Accept: application/json``, ``*/*`` or ``?format=json`` get the list.
    """
    router = APIRouter(prefix="/dev/outbox", tags=["dev"])

    @router.get(
        "", response_model=list[CaughtMessage], responses={200: {"content": {"text/html": {}}}}
    )
    async def list_outbox(
        request: Request,
        to: Annotated[str | None, Query(description="only mail for this recipient")] = None,
        limit: Annotated[int | None, Query(ge=1, le=MAX_MESSAGES)] = None,
        fmt: FORMAT_QUERY = None,
    ) -> Any:
        if page is not None and wants_html(request, fmt):
            return await page(request)
        found = catcher.messages()
        if to is not None:
            wanted = to.casefold()
            found = [m for m in found if any(r.casefold() == wanted for r in m.rcpt_tos)]
        return found[-limit:] if limit is not None else found

    @router.delete("", status_code=204)
    async def clear_outbox() -> None:
        catcher.clear()

    return router
