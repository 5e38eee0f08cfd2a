"""Twilio's Messages API as a local server, at the protocol level, for tests and dev.

The real ``twilio`` client talks to it over HTTP on 127.0.0.1 (point
``NOTIFIER_TWILIO_API_BASE`` at :attr:`TwilioFake.base_url`): Basic auth, form fields,
Twilio's JSON bodies and error codes, and signed status callbacks ("sent", then the
final status) to the ``StatusCallback`` URL. It serves from the *current* asyncio loop,
so a test can await :meth:`TwilioFake.wait_for` instead of polling another thread.

Tests script it with plain attributes: :meth:`fail_next` for the next requests, sets of
numbers answered with a given error or final status, :attr:`down` and
:attr:`latency_s`. Development only: it keeps every message in memory.

This module is the server, its scripted answers and the callbacks it sends; Twilio's
own rules and shapes (form checks, error codes, the Message resource, callback fields,
:class:`Failure`, :class:`FakeMessage`, :class:`CallbackAttempt`) are ``twiliowire.py``'s.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from notifier.devtools.twiliowire import (
    API_VERSION,
    UNKNOWN_ERROR,
    UNREACHABLE_HANDSET,
    CallbackAttempt,
    Failure,
    FakeMessage,
    basic_auth,
    callback_params,
    form_refusal,
    invalid_number,
    message_resource,
    new_message,
    unauthorized,
)


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
        user = basic_auth(request.headers.get("Authorization", ""))
        if user != (self.account_sid, self.auth_token):
            return unauthorized()
        if request.match_info["account_sid"] != self.account_sid:
            return Failure(404, 20404, "The requested resource was not found").response()
        if self._next_failures:
            return self._next_failures.popleft().response()
        form = {name: str(value) for name, value in (await request.post()).items()}
        refusal = self._refusal(form)
        if refusal is not None:
            return refusal.response()
        message = new_message(form, user[0])
        self._messages.append(message)
        await self._notify()
        if message.status_callback:
            task = asyncio.create_task(self._report(message, message.status_callback))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(message_resource(self.account_sid, message), status=201)

    def _refusal(self, form: dict[str, str]) -> Failure | None:
        """What Twilio would refuse in these form fields, then what the test scripted."""
        refusal = form_refusal(form)
        if refusal is not None:
            return refusal
        to = form["To"]
        if to in self.invalid_numbers:
            return invalid_number(to)
        if to in self.unsubscribed_numbers:
            return Failure(400, 21610, "Attempt to send to unsubscribed recipient")
        return self.number_failures.get(to)

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
        params = callback_params(self.account_sid, message, status, error_code)
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
