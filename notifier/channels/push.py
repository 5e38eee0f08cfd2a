"""Push notifications through FCM HTTP v1, with firebase-admin's own client.

The firebase-admin set-up (credential, app, HTTP session without library retries,
sending threads) lives in ``fcm_client.py``, with the library internals it relies on;
this module is the channel: what a push message is, its limits, how a failure maps to
a delivery error, and its ``PLUGIN``.

Sending: ``messaging.send`` on a bounded thread pool (``push_concurrency`` threads, one
per send the dispatcher keeps in flight), not ``send_each_async``. STYLE warns against
wrapping sync code where an async client exists, and it is wrapped here on purpose:
``send_each_async`` managed ~300 msg/s against ~1,000 msg/s for ``send`` on threads
(FACTS.md; against the local fake in the same process, this channel on 16 threads did
720-1,070 msg/s and ``send_each_async`` in batches of 100 ~410), its httpx auth flow
fetches OAuth tokens with a *blocking* ``requests`` call on the event loop, and its
retry transport cannot be configured through the app. ``close`` shuts the pool down.

How failures map (first match wins; the caller never sees a firebase error)::

    UnregisteredError (404 UNREGISTERED)      permanent  unregistered        dead recipient
    SenderIdMismatchError (403)               permanent  sender_id_mismatch  dead recipient
    ThirdPartyAuthError (APNs/web push key)   transient  third_party_auth
    InvalidArgumentError (400)                permanent  invalid_argument
    QuotaExceededError, 429                   transient  quota_exceeded      Retry-After kept
    401, 403, token endpoint errors           transient  auth
    DeadlineExceededError (our timeout)       transient  timeout
    UnavailableError (503, cannot connect)    transient  unavailable         Retry-After kept
    InternalError (500)                       transient  internal
    any other FirebaseError                   transient  fcm_error
    the message cannot be encoded             permanent  invalid_message

Credential and project problems stay transient: every message would fail the same way
until an operator fixes them, the circuit breaker holds the channel back meanwhile, and
dropping them as permanent would lose them. Provider texts are kept in the error with
the token, title and body cut out; nothing here logs a token or a body.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from firebase_admin import exceptions as fcm_errors  # type: ignore[import-untyped]
from firebase_admin import messaging
from google.auth import exceptions as auth_errors

from notifier.channels.base import (
    ChannelPlugin,
    OutboundMessage,
    SendLimits,
    SendReceipt,
    missing_settings,
    parse_retry_after,
)
from notifier.channels.fcm_client import FcmApp, open_app
from notifier.config import Settings
from notifier.contracts.channels import ChannelSpec, TemplateParts
from notifier.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)

log = logging.getLogger(__name__)

#: a title longer than this is a template bug (Android shows ~40-65 characters); room to localise
TITLE_MAX_CHARS = 120
#: below the 1,024 characters the Firebase console allows; phones show a few lines of it
BODY_MAX_CHARS = 1000
#: FCM and APNs refuse a notification whose payload (notification + data) is bigger
PAYLOAD_MAX_BYTES = 4096
#: kept free for what FCM and APNs wrap around it (``aps``, ``gcm.message_id``, ``google.c.*``)
PROVIDER_OVERHEAD_BYTES = 256
#: kept free at render time for our data fields (notification id, order id, state)
DATA_RESERVE_BYTES = 256
#: APNs drops a longer ``apns-collapse-id``
APNS_COLLAPSE_ID_MAX_BYTES = 64


def push_limit_problem(title: str | None, body: str) -> str | None:
    """Why FCM would refuse (or a phone mangle) this title and body, or None if it fits.

    Called at render time so an over-long template fails there, with a reason, rather
    than at send time; ``send`` checks again with the real data fields.
    """
    if title is not None and len(title) > TITLE_MAX_CHARS:
        return f"push title has {len(title)} characters, more than {TITLE_MAX_CHARS}"
    if len(body) > BODY_MAX_CHARS:
        return f"push body has {len(body)} characters, more than {BODY_MAX_CHARS}"
    budget = PAYLOAD_MAX_BYTES - PROVIDER_OVERHEAD_BYTES - DATA_RESERVE_BYTES
    size = payload_bytes(title, body, {})
    if size > budget:
        return f"push title and body take {size} bytes as JSON, more than {budget}"
    return None


def payload_bytes(title: str | None, body: str, data: dict[str, str]) -> int:
    """The size FCM counts against its limit: notification and data as UTF-8 JSON."""
    notification = {"body": body} if title is None else {"title": title, "body": body}
    payload = {"notification": notification, "data": data}
    return len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())


def apns_collapse_id(notification_id: str) -> str:
    """The notification id if APNs can carry it, else its SHA-256 in hex (64 characters).

    A hash rather than a cut: two ids that share their first 64 bytes stay distinct,
    and the same id always gives the same value, so a repeated send still collapses.
    """
    fits = len(notification_id.encode()) <= APNS_COLLAPSE_ID_MAX_BYTES
    if fits and notification_id.isascii() and notification_id.isprintable():
        return notification_id
    return hashlib.sha256(notification_id.encode()).hexdigest()


def fcm_message(message: OutboundMessage) -> messaging.Message:
    """The FCM message; the notification id is its collapse identity on Android and iOS."""
    # Our recipients are FCM registration tokens, which the v1 API takes in
    # ``message.token``; 7.7 deprecates the argument in favour of ``fid`` (installation
    # ids), which we do not have.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Message.token is deprecated", category=DeprecationWarning
        )
        return messaging.Message(
            token=message.to,
            notification=messaging.Notification(title=message.subject, body=message.text),
            data=fcm_data(message),
            android=messaging.AndroidConfig(collapse_key=message.notification_id),
            apns=messaging.APNSConfig(
                headers={"apns-collapse-id": apns_collapse_id(message.notification_id)}
            ),
        )


def fcm_data(message: OutboundMessage) -> dict[str, str]:
    """The data fields the app reads: which notification, about which order and state."""
    return {
        "notification_id": message.notification_id,
        "order_id": message.order_id,
        "state": message.state,
    }


@dataclass(frozen=True, slots=True)
class FcmErrorRule:
    """How one kind of firebase or google-auth failure becomes a delivery error."""

    error: type[Exception]
    permanent: bool
    code: str
    dead_recipient: bool = False


#: first match wins, so a subclass comes before its base
FCM_ERROR_RULES: tuple[FcmErrorRule, ...] = (
    FcmErrorRule(messaging.UnregisteredError, True, "unregistered", dead_recipient=True),
    FcmErrorRule(messaging.SenderIdMismatchError, True, "sender_id_mismatch", dead_recipient=True),
    FcmErrorRule(messaging.ThirdPartyAuthError, False, "third_party_auth"),
    FcmErrorRule(fcm_errors.InvalidArgumentError, True, "invalid_argument"),
    FcmErrorRule(messaging.QuotaExceededError, False, "quota_exceeded"),
    FcmErrorRule(fcm_errors.ResourceExhaustedError, False, "quota_exceeded"),
    FcmErrorRule(fcm_errors.UnauthenticatedError, False, "auth"),
    FcmErrorRule(fcm_errors.PermissionDeniedError, False, "auth"),
    FcmErrorRule(fcm_errors.DeadlineExceededError, False, "timeout"),
    FcmErrorRule(fcm_errors.UnavailableError, False, "unavailable"),
    FcmErrorRule(fcm_errors.InternalError, False, "internal"),
    FcmErrorRule(fcm_errors.FirebaseError, False, "fcm_error"),
    FcmErrorRule(auth_errors.GoogleAuthError, False, "auth"),
    FcmErrorRule(ValueError, True, "invalid_message"),
)
_MAPPED_ERRORS = tuple(rule.error for rule in FCM_ERROR_RULES)


class PushChannel:
    """The ``push`` channel: FCM HTTP v1 through firebase-admin, one named app per channel."""

    name: ClassVar[str] = "push"
    provider: ClassVar[str] = "fcm"
    breaker_per_recipient: ClassVar[bool] = False

    def __init__(
        self, *, credentials_file: Path, api_base: str, timeout_s: float, max_workers: int
    ) -> None:
        self._credentials_file = credentials_file
        self._api_base = api_base.rstrip("/")
        self._timeout_s = timeout_s
        self._max_workers = max_workers
        self._running: FcmApp | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PushChannel:
        """Build the channel from ``NOTIFIER_FCM_*``; refuses without a credentials file."""
        reason = missing_settings(settings, ("fcm_credentials_file",))
        if reason is not None or settings.fcm_credentials_file is None:
            raise ConfigError(f"{reason}; the push channel needs a service-account file")
        return cls(
            credentials_file=settings.fcm_credentials_file,
            api_base=settings.fcm_api_base,
            timeout_s=settings.push_timeout_s,
            max_workers=settings.push_concurrency,
        )

    async def start(self) -> None:
        """Load the credentials, create the firebase app and fetch a first access token.

        Without the early token every thread would fetch its own on the first burst of
        sends. If the token endpoint refuses now, start-up goes on: sends then fail as
        transient ``auth`` errors until it answers.
        """
        if self._running is not None:
            raise RuntimeError("PushChannel is already running")
        if self._timeout_s <= 0 or self._max_workers < 1:
            raise ConfigError("push channel: timeout_s must be > 0 and max_workers >= 1")
        running = self._running = open_app(
            self._credentials_file,
            api_base=self._api_base,
            timeout_s=self._timeout_s,
            max_workers=self._max_workers,
        )
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(running.pool, running.fetch_token)
        except auth_errors.GoogleAuthError as exc:
            log.warning("push channel: no FCM access token at start-up (%s); will retry", exc)

    async def send(self, message: OutboundMessage) -> SendReceipt:
        """Hand one message to FCM; raises a typed delivery error, never returns False."""
        if self._running is None:
            raise RuntimeError("PushChannel is not running: call start() first")
        running = self._running
        _check_sendable(message)
        send = functools.partial(messaging.send, fcm_message(message), app=running.app)
        try:
            name = await asyncio.get_running_loop().run_in_executor(running.pool, send)
        except _MAPPED_ERRORS as exc:
            # `from None`: the library's exception may quote the request.
            raise delivery_error(exc, message) from None
        return SendReceipt(provider=self.provider, provider_message_id=str(name))

    async def close(self) -> None:
        """Wait for in-flight sends, then delete the firebase app and its connections."""
        running, self._running = self._running, None
        if running is not None:
            await asyncio.to_thread(running.close)


def _check_sendable(message: OutboundMessage) -> None:
    problem = push_limit_problem(message.subject, message.text)
    if problem is None:
        size = payload_bytes(message.subject, message.text, fcm_data(message))
        if size > PAYLOAD_MAX_BYTES - PROVIDER_OVERHEAD_BYTES:
            problem = f"push payload takes {size} bytes, more than FCM carries"
    if problem is not None:
        raise PermanentDeliveryError(problem, code="over_limit")
    if not message.to.strip():
        raise PermanentDeliveryError("the push token is empty", code="invalid_argument")
    if not message.text.strip():
        raise PermanentDeliveryError("the push body is empty", code="invalid_message")


def delivery_error(exc: Exception, message: OutboundMessage) -> DeliveryError:
    """Map a firebase or google-auth failure with :data:`FCM_ERROR_RULES`."""
    rule = next(r for r in FCM_ERROR_RULES if isinstance(exc, r.error))
    text = _redact(_describe(exc), message)
    if rule.permanent:
        return PermanentDeliveryError(text, code=rule.code, dead_recipient=rule.dead_recipient)
    return TransientDeliveryError(text, code=rule.code, retry_after=_retry_after(exc))


def _describe(exc: Exception) -> str:
    response = getattr(exc, "http_response", None)
    if response is not None:
        return f"FCM answered {response.status_code} {getattr(exc, 'code', '')}: {exc}"
    if isinstance(exc, auth_errors.GoogleAuthError):
        return f"no FCM access token ({type(exc).__name__}): {exc}"
    return f"{type(exc).__name__}: {exc}"


def _redact(text: str, message: OutboundMessage) -> str:
    for secret, placeholder in (
        (message.to, "<token>"),
        (message.text, "<body>"),
        (message.subject, "<title>"),
    ):
        if secret:
            text = text.replace(secret, placeholder)
    return text


def _retry_after(exc: Exception) -> float | None:
    """``Retry-After`` from the provider's answer, if any."""
    response = getattr(exc, "http_response", None)
    return parse_retry_after(response.headers.get("Retry-After") if response is not None else None)


PLUGIN = ChannelPlugin(
    spec=ChannelSpec(
        name=PushChannel.name,
        parts=TemplateParts(subject="title", text="body"),
        recipient=lambda customer: customer.push_tokens[0] if customer.push_tokens else None,
        contact="push token",
        quiet_hours=True,
    ),
    requires=("fcm_credentials_file",),
    build=PushChannel.from_settings,
    limits=lambda s: SendLimits(concurrency=s.push_concurrency, rate_per_s=s.push_rate_per_s),
    render_check=lambda _settings: push_limit_problem,
    # FCM says when an app was uninstalled: that token is never tried again
    remembers_dead_recipients=True,
)
