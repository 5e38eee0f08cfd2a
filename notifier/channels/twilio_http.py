"""twilio's aiohttp client, made fit for the SMS channel: routed, timed, and watched.

The client has no setting for its API host, so :class:`RoutedHttpClient` rewrites
``https://api.twilio.com`` to ``api_base`` (``NOTIFIER_TWILIO_API_BASE``: the dev/test
fake) and puts the timeout on every request: the async client ignores its constructor
timeout, and a request without one never times out.

``TwilioRestException`` does not keep the response headers, so the client notes
``Retry-After`` in an :class:`Exchange` that the calling send put in :data:`EXCHANGE`:
concurrent sends run in separate tasks, each with its own context.

Apart from ``channels/sms.py`` (what a send is and how its failures map) because this
is plumbing around one library's HTTP layer, which changes with that library.
"""

from __future__ import annotations

import base64
import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# twilio ships no type information (no py.typed); its objects are ``Any`` here.
from twilio.http.async_http_client import AsyncTwilioHttpClient  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

#: the host every URL the twilio client builds for the Messages API starts with
TWILIO_API_BASE = "https://api.twilio.com"


@dataclass
class Exchange:
    """What the HTTP client saw for one ``send``; the send reads it after a refusal."""

    retry_after: str | None = None


#: the Exchange of the send running in this task; None outside a send
EXCHANGE: ContextVar[Exchange | None] = ContextVar("twilio_exchange", default=None)


class RoutedHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """twilio's aiohttp client, pointed at ``api_base``, with a timeout on every request."""

    def __init__(self, api_base: str, timeout_s: float) -> None:
        super().__init__(pool_connections=True, logger=log)
        self._api_base = api_base.rstrip("/")
        self._timeout_s = timeout_s

    # The signature is twilio's HttpClient.request, which the library calls with keywords.
    async def request(  # noqa: PLR0917
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
        allow_redirects: bool = False,
    ) -> Any:
        """Send to ``api_base``, note ``Retry-After`` for the calling send."""
        if not url.startswith(TWILIO_API_BASE + "/"):
            # Only the Messages API is used; anything else would leave the configured host.
            raise RuntimeError(f"refusing a Twilio request outside {TWILIO_API_BASE}: {url}")
        headers = dict(headers or {})
        if auth is not None:
            # The library would pass aiohttp.BasicAuth, deprecated since aiohttp 3.14.
            credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {credentials}"
        response = await super().request(
            method,
            self._api_base + url.removeprefix(TWILIO_API_BASE),
            params=params,
            data=data,
            headers=headers,
            timeout=timeout or self._timeout_s,
            allow_redirects=allow_redirects,
        )
        exchange = EXCHANGE.get()
        if exchange is not None and response.headers is not None:
            exchange.retry_after = response.headers.get("Retry-After")
        return response

    def log_request(self, kwargs: dict[str, Any]) -> None:
        """One debug line with the path; the library's INFO lines are too many per send."""
        log.debug("twilio request: %s %s", kwargs["method"], urlsplit(kwargs["url"]).path)

    def log_response(self, status_code: int, response: Any) -> None:
        """One debug line with the status (headers carry nothing we need in logs)."""
        log.debug("twilio response: %s", status_code)
