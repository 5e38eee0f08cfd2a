"""Twilio's Messages API as a local server, at the protocol level, for tests and dev.

The real ``twilio`` client talks to it over HTTP on 127.0.0.1 (point
``NOTIFIER_TWILIO_API_BASE`` at :attr:`TwilioFake.base_url`): Basic auth, form fields,
Twilio's JSON bodies and error codes, and signed status callbacks ("sent", then the
final status) to the ``StatusCallback`` URL. It serves from the *current* asyncio loop,
so a test can await :meth:`TwilioFake.wait_for` instead of polling another thread.

Tests script it with plain attributes: :meth:`fail_next` for the next requests, sets of
numbers answered with a given error or final status, :attr:`down` and
:attr:`latency_s`. Development only: it keeps every message in memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from notifier.channels.gsm import count_segments, is_e164

API_VERSION = "2010-04-01"
#: the sender a Messaging Service "picks" when a message names only the service
SERVICE_SENDER = "+15005550006"
#: Twilio's limit on ``Body``
MAX_BODY_CHARS = 1600
#: Twilio's error code for a handset that could not be reached (the usual undelivered)
UNREACHABLE_HANDSET = "30003"
#: Twilio's "unknown error", given with a scripted ``failed``
UNKNOWN_ERROR = "30008"

_ALPHANUMERIC_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
_DEFAULT_MESSAGES = {
    429: (20429, "Too Many Requests"),
    500: (20500, "An internal server error has occurred"),
    503: (20503, "Service unavailable"),
}


@dataclass(frozen=True, slots=True)
class Failure:
    """One scripted refusal, answered as Twilio would: status, code, message."""

    status: int
    code: int
    message: str
    #: seconds for a ``Retry-After`` header, when the answer should carry one
    retry_after: float | None = None

    @classmethod
    def of(
        cls, status: int, code: int | None = None, *, retry_after: float | None = None
    ) -> Failure:
        """A failure with Twilio's usual code and text for ``status`` unless given."""
        default_code, text = _DEFAULT_MESSAGES.get(status, (status * 100, "Scripted failure"))
        return cls(status, code or default_code, text, retry_after)

    def response(self) -> web.Response:
        """The JSON error body Twilio sends (``code``, ``message``, ``more_info``, ``status``)."""
        headers = {} if self.retry_after is None else {"Retry-After": f"{self.retry_after:g}"}
        body = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        return web.json_response(body, status=self.status, headers=headers)


@dataclass
class FakeMessage:
    """One accepted message and what became of it."""

    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    num_segments: int
    #: the Basic-auth user (account SID) the request carried
    auth_user: str
    #: every form field as sent
    form: dict[str, str]
    #: ISO 8601, UTC
    received_at: str
    #: queued/accepted, then sent, then the final status
    status: str

    def outbox_entry(self) -> dict[str, str | None]:
        """What the dev outbox page shows for it."""
        return {
            "sid": self.sid,
            "to": self.to,
            "from": self.from_ or self.messaging_service_sid,
            "body": self.body,
            "status": self.status,
            "received_at": self.received_at,
        }


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    """One status callback the fake POSTed, and how the receiver answered."""

    sid: str
    url: str
    message_status: str
    params: dict[str, str]
    signature: str
    #: the receiver's HTTP status, or None when it could not be reached
    response_status: int | None
    error: str | None = None


class TwilioFake:
    """``POST /2010-04-01/Accounts/{sid}/Messages.json`` on this loop, with callbacks."""

    def __init__(
        self, account_sid: str, auth_token: str, *, callback_delay_s: float = 0.01
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.callback_delay_s = callback_delay_s
        #: answer every request 503, as an outage would
        self.down = False
        #: seconds to wait before answering each request
        self.latency_s = 0.0
        #: numbers answered 21211 (invalid), 21610 (unsubscribed), or a given failure
        self.invalid_numbers: set[str] = set()
        self.unsubscribed_numbers: set[str] = set()
        self.number_failures: dict[str, Failure] = {}
        #: numbers whose final callback is undelivered (30003) or failed (30008)
        self.undelivered_numbers: set[str] = set()
        self.failed_numbers: set[str] = set()
        #: requests received, answered or not
        self.request_count = 0
        self.callbacks: list[CallbackAttempt] = []
        self._next_failures: deque[Failure] = deque()
        self._messages: list[FakeMessage] = []
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 = any free port) and return the port bound."""
        if self._runner is not None:
            raise RuntimeError("TwilioFake is already running")
        app = web.Application()
        app.router.add_post(f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json", self._create)
        # handler_cancellation: a client that timed out does not keep a slow answer waiting.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._host, self._port = host, int(runner.addresses[0][1])
        return self._port

    async def stop(self) -> None:
        """Cancel pending callbacks, stop listening, close the callback client."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>``, for ``NOTIFIER_TWILIO_API_BASE``."""
        if self._port is None or self._runner is None:
            raise RuntimeError("TwilioFake is not running: call start() first")
        return f"http://{self._host}:{self._port}"

    def fail_next(
        self, count: int, status: int, code: int | None = None, *, retry_after: float | None = None
    ) -> None:
        """Answer the next ``count`` authorised requests with this error."""
        self._next_failures.extend([Failure.of(status, code, retry_after=retry_after)] * count)

    def messages(self) -> list[FakeMessage]:
        """Every accepted message, oldest first."""
        return list(self._messages)

    def outbox(self) -> list[dict[str, str | None]]:
        """Accepted messages as JSON-able dicts, for a dev outbox page."""
        return [message.outbox_entry() for message in self._messages]

    def clear(self) -> None:
        """Forget accepted messages and callbacks."""
        self._messages.clear()
        self.callbacks.clear()

    # The bound sits in the call because a test reads better that way.
    async def wait_for(self, count: int, timeout: float = 5.0) -> list[FakeMessage]:  # noqa: ASYNC109
        """Wait until ``count`` messages were accepted; raises ``TimeoutError`` if not."""
        await self._wait(lambda: len(self._messages) >= count, timeout)
        return self.messages()

    async def wait_for_callbacks(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[CallbackAttempt]:
        """Wait until ``count`` status callbacks were attempted; ``TimeoutError`` if not."""
        await self._wait(lambda: len(self.callbacks) >= count, timeout)
        return list(self.callbacks)

    async def _wait(self, done: Callable[[], bool], within_s: float) -> None:
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(done)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _create(self, request: web.Request) -> web.Response:
        self.request_count += 1
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if self.down:
            return Failure.of(503).response()
        user = _basic_auth(request.headers.get("Authorization", ""))
        if user != (self.account_sid, self.auth_token):
            return _unauthorized()
        if request.match_info["account_sid"] != self.account_sid:
            return Failure(404, 20404, "The requested resource was not found").response()
        if self._next_failures:
            return self._next_failures.popleft().response()
        form = {name: str(value) for name, value in (await request.post()).items()}
        refusal = self._refusal(form)
        if refusal is not None:
            return refusal.response()
        message = self._accept(form, user[0])
        self._messages.append(message)
        await self._notify()
        if message.status_callback:
            task = asyncio.create_task(self._report(message, message.status_callback))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(self._resource(message), status=201)

    def _refusal(self, form: dict[str, str]) -> Failure | None:
        """What Twilio would refuse in these form fields, checked in Twilio's order."""
        to, sender = form.get("To", ""), form.get("From", "")
        if not to:
            return Failure(400, 21604, "A 'To' phone number is required.")
        if not sender and not form.get("MessagingServiceSid"):
            return Failure(
                400,
                21603,
                "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
            )
        if sender and not (is_e164(sender) or _ALPHANUMERIC_SENDER.fullmatch(sender)):
            return Failure(
                400,
                21212,
                f"The 'From' number {sender} is not a valid phone number, shortcode, "
                "or alphanumeric sender ID.",
            )
        if not form.get("Body"):
            return Failure(400, 21602, "Message body is required.")
        if len(form["Body"]) > MAX_BODY_CHARS:
            return Failure(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if not is_e164(to) or to in self.invalid_numbers:
            return Failure(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in self.unsubscribed_numbers:
            return Failure(400, 21610, "Attempt to send to unsubscribed recipient")
        return self.number_failures.get(to)

    def _accept(self, form: dict[str, str], auth_user: str) -> FakeMessage:
        service = form.get("MessagingServiceSid") or None
        sender = form.get("From") or None
        return FakeMessage(
            sid="SM" + secrets.token_hex(16),
            to=form["To"],
            from_=sender,
            messaging_service_sid=service,
            body=form["Body"],
            status_callback=form.get("StatusCallback") or None,
            num_segments=count_segments(form["Body"]),
            auth_user=auth_user,
            form=form,
            received_at=datetime.now(UTC).isoformat(),
            # Twilio answers "accepted" while a Messaging Service still picks the sender.
            status="accepted" if service and not sender else "queued",
        )

    def _resource(self, message: FakeMessage) -> dict[str, Any]:
        """The Message resource as Twilio's 201 answer has it."""
        now = format_datetime(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{message.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": message.body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": message.from_,
            "messaging_service_sid": message.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(message.num_segments),
            "price": None,
            "price_unit": "USD",
            "sid": message.sid,
            "status": message.status,
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": message.to,
            "uri": f"{uri}.json",
        }

    async def _report(self, message: FakeMessage, url: str) -> None:
        """POST "sent", then the final status, as Twilio's status callbacks do."""
        final, error_code = "delivered", None
        if message.to in self.undelivered_numbers:
            final, error_code = "undelivered", UNREACHABLE_HANDSET
        elif message.to in self.failed_numbers:
            final, error_code = "failed", UNKNOWN_ERROR
        for status, code in (("sent", None), (final, error_code)):
            await asyncio.sleep(self.callback_delay_s)
            message.status = status
            await self._post_callback(message, url, status, code)

    async def _post_callback(
        self, message: FakeMessage, url: str, status: str, error_code: str | None
    ) -> None:
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "From": message.from_ or SERVICE_SENDER,
            "MessageSid": message.sid,
            "MessageStatus": status,
            "SmsSid": message.sid,
            "SmsStatus": status,
            "To": message.to,
        }
        if message.messaging_service_sid:
            params["MessagingServiceSid"] = message.messaging_service_sid
        if error_code is not None:
            params["ErrorCode"] = error_code
        signature = str(RequestValidator(self.auth_token).compute_signature(url, params))
        answered: int | None = None
        error: str | None = None
        assert self._session is not None
        try:
            async with self._session.post(
                url, data=params, headers={"X-Twilio-Signature": signature}
            ) as response:
                answered = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.callbacks.append(
            CallbackAttempt(message.sid, url, status, params, signature, answered, error)
        )
        await self._notify()


def _basic_auth(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _unauthorized() -> web.Response:
    body = {
        "code": 20003,
        "detail": "Your AccountSid or AuthToken was incorrect.",
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    return web.json_response(
        body, status=401, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'}
    )
