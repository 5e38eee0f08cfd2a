"""Webhooks: partner systems receive order and shipment transitions as signed JSON POSTs.

The endpoints file (``NOTIFIER_WEBHOOKS_FILE``) is read by
:mod:`notifier.channels.webhook_endpoints`. Here, in the order a delivery meets them:

- signing: hex HMAC-SHA256 over ``"<unix seconds>." + body``, sent as
  ``X-Notifier-Signature: t=<seconds>,v1=<hex>``. The timestamp is inside the MAC, so a
  captured request cannot be replayed once it is older than the partner's tolerance;
- the adapter: one shared ``httpx.AsyncClient``, one POST per delivery, redirects not
  followed (a redirect would carry a signed body somewhere nobody registered).

How answers map (the caller never sees an httpx error):

    2xx                                        SendReceipt (provider id = notification id)
    429, 503                                   TransientDeliveryError, Retry-After honoured
    408, 425, any other 5xx                    TransientDeliveryError
    timeout, cannot connect, connection lost   TransientDeliveryError
    410 Gone, 3xx, any other 4xx               PermanentDeliveryError
    endpoint no longer in the file             PermanentDeliveryError

Error codes: ``http_<status>``, ``timeout``, ``connect``, ``network``, ``unknown_endpoint``.

URLs may carry tokens in their query or user info, so no error text, repr or config
error shows a URL or a secret: the endpoint is named instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

import httpx

from notifier.channels.base import (
    ChannelAdapter,
    ChannelPlugin,
    OutboundMessage,
    SendLimits,
    SendReceipt,
    parse_retry_after,
)
from notifier.channels.webhook_endpoints import (
    WebhookEndpoint,
    WebhookEndpoints,
    load_webhooks,
)
from notifier.config import Settings
from notifier.contracts.channels import PARTNER_CHANNEL, ChannelSpec, PartnerRoutes
from notifier.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)

SIGNATURE_HEADER = "X-Notifier-Signature"
DELIVERY_HEADER = "X-Notifier-Delivery"
TIMESTAMP_HEADER = "X-Notifier-Timestamp"
USER_AGENT = "notifier-webhook/1"
#: answers that are "busy, come back" and may say when (RFC 9110 §10.2.3)
RETRY_AFTER_STATUSES = frozenset({429, 503})
#: 4xx answers that say nothing about the delivery itself: timeout, too early, too many
TRANSIENT_4XX = frozenset({408, 425, 429})
#: a response body up to this size is read so the connection can be reused; a larger
#: one is left unread and its connection closed (bodies are never looked at)
MAX_DRAINED_BYTES = 64 * 1024

_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def sign(secret: bytes | str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``b"<timestamp>." + body`` under ``secret``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes | str, timestamp: int, body: bytes) -> str:
    """The ``X-Notifier-Signature`` value: ``t=<timestamp>,v1=<hex>``."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify(
    secret: bytes | str,
    header: str,
    body: bytes,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` under ``secret`` within ``tolerance_s`` of ``now``.

    Any one ``v1=`` may match (several are sent while a secret is rotated); unknown
    keys are ignored so a later scheme can be added alongside. Malformed means False.
    """
    timestamp: int | None = None
    candidates: list[bytes] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and _TIMESTAMP.fullmatch(value):
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value.encode("utf-8"))
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).encode("ascii")
    # Every candidate is compared, so timing says nothing about which one matched.
    return any([hmac.compare_digest(expected, candidate) for candidate in candidates])


def error_for_status(
    endpoint: str, status: int, retry_after: str | None = None, *, now: datetime | None = None
) -> DeliveryError | None:
    """The delivery error an HTTP answer means (None for 2xx); see the module's table."""
    if 200 <= status < 300:
        return None
    code = f"http_{status}"
    answered = f"webhook endpoint {endpoint} answered HTTP {status}"
    if status in RETRY_AFTER_STATUSES:
        return TransientDeliveryError(
            answered, code=code, retry_after=parse_retry_after(retry_after, now=now)
        )
    if status in TRANSIENT_4XX or status >= 500:
        return TransientDeliveryError(answered, code=code)
    if status == 410:
        answered += " (Gone); if the partner retired it, remove it from the webhooks file"
    elif 300 <= status < 400:
        answered += "; redirects are not followed, register the final URL"
    return PermanentDeliveryError(answered, code=code)


class WebhookChannel:
    """The ``webhook`` channel: ``message.to`` names an endpoint, ``message.text`` is the
    JSON body, sent byte for byte. The dispatcher keeps one breaker per endpoint."""

    name: ClassVar[str] = PARTNER_CHANNEL
    provider: ClassVar[str] = "webhook"
    breaker_per_recipient: ClassVar[bool] = True

    def __init__(self, endpoints: WebhookEndpoints, *, default_timeout_s: float) -> None:
        if default_timeout_s <= 0:
            raise ConfigError("webhook channel: default_timeout_s must be > 0")
        self._endpoints = endpoints
        self._default_timeout_s = default_timeout_s
        self._client: httpx.AsyncClient | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookChannel:
        """Build the channel from ``NOTIFIER_WEBHOOKS_FILE``; refuses when it is not set."""
        if settings.webhooks_file is None:
            raise ConfigError("NOTIFIER_WEBHOOKS_FILE is not set; the webhook channel needs it")
        return cls(
            load_webhooks(settings.webhooks_file),
            default_timeout_s=settings.webhook_timeout_s,
        )

    @property
    def endpoints(self) -> WebhookEndpoints:
        """The endpoints this channel delivers to."""
        return self._endpoints

    async def start(self) -> None:
        """Open the shared HTTP client (connections are pooled per partner host)."""
        if self._client is not None:
            raise RuntimeError("WebhookChannel is already running")
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=self._default_timeout_s,
            headers={"User-Agent": USER_AGENT},
        )

    async def send(self, message: OutboundMessage) -> SendReceipt:
        """POST one delivery; raises a typed error for anything but a 2xx answer."""
        client = self._client
        if client is None:
            raise RuntimeError("WebhookChannel is not running: call start() first")
        endpoint = self._endpoints.get(message.to)
        if endpoint is None:
            raise PermanentDeliveryError(
                f"no webhook endpoint named {message.to!r} in the webhooks file",
                code="unknown_endpoint",
            )
        body = message.text.encode("utf-8")
        # A fresh timestamp per attempt, so a retry hours later is not stale; the
        # delivery id stays the same, so the partner can drop a repeat.
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(endpoint.secret.get_secret_value(), timestamp, body),
            DELIVERY_HEADER: message.notification_id,
            TIMESTAMP_HEADER: str(timestamp),
        }
        self._in_flight += 1
        self._idle.clear()
        try:
            status, retry_after = await self._post(client, endpoint, body, headers)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        error = error_for_status(endpoint.name, status, retry_after)
        if error is not None:
            raise error
        return SendReceipt(provider=self.provider, provider_message_id=message.notification_id)

    async def close(self) -> None:
        """Refuse new sends, wait for those in flight, then close the client."""
        client, self._client = self._client, None
        if client is None:
            return
        await self._idle.wait()
        await client.aclose()

    async def _post(
        self,
        client: httpx.AsyncClient,
        endpoint: WebhookEndpoint,
        body: bytes,
        headers: dict[str, str],
    ) -> tuple[int, str | None]:
        timeout = endpoint.timeout_s if endpoint.timeout_s is not None else self._default_timeout_s
        try:
            # httpx's timeout bounds each read; this bounds the whole exchange.
            async with (
                asyncio.timeout(timeout),
                client.stream(
                    "POST", endpoint.url, content=body, headers=headers, timeout=timeout
                ) as response,
            ):
                length = response.headers.get("Content-Length", "")
                if length.isdigit() and int(length) <= MAX_DRAINED_BYTES:
                    await response.aread()
                return response.status_code, response.headers.get("Retry-After")
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise TransientDeliveryError(
                f"webhook endpoint {endpoint.name} did not answer within {timeout:g}s",
                code="timeout",
            ) from exc
        except httpx.ConnectError as exc:
            raise TransientDeliveryError(
                f"cannot connect to webhook endpoint {endpoint.name}", code="connect"
            ) from exc
        except httpx.TransportError as exc:
            raise TransientDeliveryError(
                f"webhook endpoint {endpoint.name}: connection failed ({type(exc).__name__})",
                code="network",
            ) from exc


def _routes(adapter: ChannelAdapter) -> PartnerRoutes:
    """The endpoints of the running channel that want a transition, by name."""
    if not isinstance(adapter, WebhookChannel):
        return lambda _source, _state: ()
    endpoints = adapter.endpoints

    def route(source: str, state: str) -> Sequence[str]:
        return [e.name for e in endpoints.matching(source, state)]

    return route


PLUGIN = ChannelPlugin(
    # a partner channel: no templates (the body is the event as JSON) and no customer
    # address (the recipient is the endpoint's name)
    spec=ChannelSpec(name=WebhookChannel.name),
    requires=("webhooks_file",),
    build=WebhookChannel.from_settings,
    limits=lambda s: SendLimits(concurrency=s.webhook_concurrency, rate_per_s=s.webhook_rate_per_s),
    routes=_routes,
)
