"""SMS through Twilio's Messages API, with the official ``twilio`` client on aiohttp.

The client is given an HTTP client (``channels/twilio_http.py``) that sends to
``twilio_api_base`` (the dev/test fake), with a timeout on every request, and notes
each answer's ``Retry-After``. The client builds its aiohttp session at construction,
which needs a running loop, so it is made in :meth:`SmsChannel.start`.

How failures map (the caller never sees a twilio or aiohttp error):

    not E.164 / empty / more than sms_max_segments   PermanentDeliveryError, before any call
    Twilio codes in PERMANENT_CODES                  PermanentDeliveryError (table below)
    429 or 20429                                     TransientDeliveryError, honours Retry-After
    401, 20003, 20005 (credentials, account)         TransientDeliveryError ``credentials``
    5xx                                              TransientDeliveryError ``twilio_<status>``
    any other 4xx                                    PermanentDeliveryError ``twilio_<code>``
    connection error, timeout                        TransientDeliveryError

Refused credentials stay transient: every message would fail the same way until an
operator fixes the configuration, and the circuit breaker holds sends back meanwhile;
failing them all permanently would lose every message sent in that time.

Twilio has no idempotency key for sending: a send retried after a timeout may reach
the customer twice. Twilio's error text quotes the phone number; it is masked before it
goes into an error (errors are stored and logged).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp

# twilio ships no type information (no py.typed); its objects are ``Any`` here.
from twilio.base.exceptions import (  # type: ignore[import-untyped]
    TwilioRestException,
    TwilioServiceException,
)
from twilio.rest import Client  # type: ignore[import-untyped]

from notifier.channels.base import (
    ChannelPlugin,
    OutboundMessage,
    SendLimits,
    SendReceipt,
    missing_settings,
    parse_retry_after,
)
from notifier.channels.gsm import count_segments, is_e164
from notifier.channels.twilio_http import EXCHANGE, TWILIO_API_BASE, Exchange, RoutedHttpClient
from notifier.config import Settings
from notifier.contracts.channels import (
    ChannelSpec,
    RenderCheck,
    SenderAddress,
    SenderPicker,
    TemplateParts,
)
from notifier.contracts.preferences import REPLIED_STOP
from notifier.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)

log = logging.getLogger(__name__)

#: the settings without which there is no SMS channel
REQUIRED_SETTINGS = ("twilio_account_sid", "twilio_auth_token", "twilio_from")
#: ``twilio_from`` in this form is a Messaging Service, which picks the sender itself
MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
#: Twilio codes that mean "our credentials or account", not "this message"
CREDENTIAL_CODES = frozenset({20003, 20005})
RATE_LIMIT_CODE = 20429


@dataclass(frozen=True, slots=True)
class Refusal:
    """How one Twilio error code ends a message: our error code, and whether the
    number itself can never take an SMS (so it is not tried again)."""

    code: str
    dead_recipient: bool = False
    #: the recipient asked the provider to stop: the ledger's reason, and an opt-out
    opted_out: str | None = None


#: Twilio error codes that no retry will change
PERMANENT_CODES: Mapping[int, Refusal] = {
    21211: Refusal("invalid_number", dead_recipient=True),  # 'To' is not a phone number
    21614: Refusal("not_mobile", dead_recipient=True),  # 'To' cannot receive SMS (landline)
    21265: Refusal("invalid_number", dead_recipient=True),  # 'To' is a short code
    # The customer replied STOP; not dead, since replying START re-subscribes them.
    21610: Refusal("unsubscribed", opted_out=REPLIED_STOP),
    21612: Refusal("unreachable"),  # no route from our sender to 'To'
    21408: Refusal("region_not_enabled"),  # the account may not send to that country
    21606: Refusal("invalid_sender"),  # 'From' cannot send SMS
}

_PHONE_NUMBER = re.compile(r"\+?\d[\d ().-]{4,}\d")


def twilio_error(
    status: int, code: int | None, detail: str, retry_after: float | None = None
) -> DeliveryError:
    """Map one refused request (HTTP status, Twilio code) to a delivery error."""
    detail = _PHONE_NUMBER.sub("<number>", detail)
    what = f"Twilio refused the message: HTTP {status}, code {code}: {detail}"
    if status == 429 or code == RATE_LIMIT_CODE:
        return TransientDeliveryError(what, code="rate_limited", retry_after=retry_after)
    if status == 401 or code in CREDENTIAL_CODES:
        return TransientDeliveryError(
            f"{what} (check NOTIFIER_TWILIO_ACCOUNT_SID / NOTIFIER_TWILIO_AUTH_TOKEN; "
            "messages stay queued)",
            code="credentials",
        )
    if status >= 500:
        return TransientDeliveryError(what, code=f"twilio_{status}", retry_after=retry_after)
    refusal = PERMANENT_CODES.get(code) if code is not None else None
    if refusal is not None:
        return PermanentDeliveryError(
            what,
            code=refusal.code,
            dead_recipient=refusal.dead_recipient,
            opted_out=refusal.opted_out,
        )
    if 400 <= status < 500:
        return PermanentDeliveryError(what, code=f"twilio_{code or status}")
    return TransientDeliveryError(what, code=f"twilio_{status}")


class SmsChannel:
    """The ``sms`` channel: Twilio Messages API, one shared client and connection pool."""

    name: ClassVar[str] = "sms"
    provider: ClassVar[str] = "twilio"
    breaker_per_recipient: ClassVar[bool] = False

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sender: str,
        api_base: str = TWILIO_API_BASE,
        public_base_url: str | None = None,
        timeout_s: float = 10.0,
        max_segments: int = 6,
    ) -> None:
        problems = _config_problems(account_sid, auth_token, sender, timeout_s, max_segments)
        if problems:
            raise ConfigError("sms channel: " + "; ".join(problems))
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._sender = sender
        self._api_base = api_base
        self._callback_base = public_base_url.rstrip("/") if public_base_url else None
        self._timeout_s = timeout_s
        self._max_segments = max_segments
        self._client: Any = None
        self._http: RoutedHttpClient | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()

    @classmethod
    def from_settings(cls, settings: Settings) -> SmsChannel:
        """Build the channel from ``NOTIFIER_TWILIO_*``; refuses when one is missing."""
        reason = missing_settings(settings, REQUIRED_SETTINGS)
        if reason is not None:
            raise ConfigError(f"sms channel: {reason}")
        assert settings.twilio_account_sid and settings.twilio_auth_token  # checked above
        assert settings.twilio_from
        return cls(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            sender=settings.twilio_from,
            api_base=settings.twilio_api_base,
            public_base_url=settings.public_base_url,
            timeout_s=settings.sms_timeout_s,
            max_segments=settings.sms_max_segments,
        )

    async def start(self) -> None:
        """Make the client and its aiohttp session (this needs the running loop)."""
        if self._http is not None:
            raise RuntimeError("SmsChannel is already running")
        self._http = RoutedHttpClient(self._api_base, self._timeout_s)
        client = Client(self._account_sid, self._auth_token, http_client=self._http)
        # The client also reads TWILIO_EDGE / TWILIO_REGION from the process environment
        # and would rewrite the host to api.<edge>.<region>.twilio.com, past api_base.
        client.edge = client.region = None
        self._client = client
        self._idle.set()

    async def send(self, message: OutboundMessage) -> SendReceipt:
        """Hand one SMS to Twilio; raises a typed error, never returns False."""
        if self._http is None:
            raise RuntimeError("SmsChannel is not running: call start() first")
        self._check(message)
        exchange = Exchange()
        context = EXCHANGE.set(exchange)
        self._in_flight += 1
        self._idle.clear()
        try:
            created = await self._client.messages.create_async(**self._params(message))
        except (TwilioRestException, TwilioServiceException) as exc:
            # `from None`: the library's exception quotes the phone number.
            retry_after = parse_retry_after(exchange.retry_after)
            raise twilio_error(exc.status, exc.code, _detail(exc), retry_after) from None
        except TimeoutError as exc:
            raise TransientDeliveryError(
                f"Twilio did not answer within {self._timeout_s}s", code="timeout"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientDeliveryError(
                f"cannot reach Twilio at {self._api_base}: {exc}", code="connect"
            ) from exc
        except ValueError as exc:
            raise TransientDeliveryError(
                f"Twilio's answer is not JSON: {exc}", code="bad_response"
            ) from exc
        finally:
            EXCHANGE.reset(context)
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        sid = created.sid
        if not isinstance(sid, str) or not sid:
            raise TransientDeliveryError("Twilio accepted but returned no sid", code="bad_response")
        log.debug("notification %s accepted by twilio as %s", message.notification_id, sid)
        return SendReceipt(provider=self.provider, provider_message_id=sid)

    async def close(self) -> None:
        """Wait for in-flight sends, then close the aiohttp session."""
        http, self._http = self._http, None
        if http is None:
            return
        await self._idle.wait()
        self._client = None
        await http.close()

    def _check(self, message: OutboundMessage) -> None:
        if not is_e164(message.to):
            raise PermanentDeliveryError(
                "'to' is not an E.164 phone number (+ and 2-15 digits)",
                code="invalid_number",
                dead_recipient=True,
            )
        segments = count_segments(message.text)
        if segments == 0:
            raise PermanentDeliveryError("the SMS text is empty", code="empty_body")
        if segments > self._max_segments:
            raise PermanentDeliveryError(
                f"the SMS needs {segments} segments; at most {self._max_segments} are allowed "
                "(NOTIFIER_SMS_MAX_SEGMENTS)",
                code="too_long",
            )

    def _params(self, message: OutboundMessage) -> dict[str, str]:
        params = {"to": message.to, "body": message.text}
        if MESSAGING_SERVICE_SID.fullmatch(self._sender):
            params["messaging_service_sid"] = self._sender
        else:
            # the store's sender, as the ledger row says (never set with a service)
            params["from_"] = message.sender or self._sender
        if self._callback_base is not None:
            notification = quote(message.notification_id, safe="")
            params["status_callback"] = f"{self._callback_base}/v1/receipts/twilio?n={notification}"
        return params


def _config_problems(
    account_sid: str, auth_token: str, sender: str, timeout_s: float, max_segments: int
) -> list[str]:
    problems: list[str] = []
    if not account_sid or not auth_token:
        problems.append("account_sid and auth_token are required")
    if not (is_e164(sender) or MESSAGING_SERVICE_SID.fullmatch(sender)):
        problems.append(
            "NOTIFIER_TWILIO_FROM must be an E.164 number or a Messaging Service SID (MG...)"
        )
    if timeout_s <= 0:
        problems.append("timeout_s must be > 0")
    if max_segments < 1:
        problems.append("max_segments must be >= 1")
    return problems


def _detail(exc: Any) -> str:
    if isinstance(exc, TwilioServiceException):
        return " - ".join(part for part in (exc.title, exc.detail) if part)
    return str(exc.msg)


def _render_check(settings: Settings) -> RenderCheck:
    limit = settings.sms_max_segments

    def check(_subject: str | None, text: str) -> str | None:
        segments = count_segments(text)
        if segments > limit:
            return f"{segments} SMS segments, more than NOTIFIER_SMS_MAX_SEGMENTS={limit}"
        return None

    return check


def _store_sender(settings: Settings) -> SenderPicker:
    """A store's ``sms_sender`` as the message's ``From``, unless ``NOTIFIER_TWILIO_FROM``
    is a Messaging Service: the service then picks the sender from its own pool (an
    alphanumeric sender ID is set up in the service), and a ``From`` outside that pool
    would be refused, so every message goes out through the service as before."""
    through_service = bool(
        settings.twilio_from and MESSAGING_SERVICE_SID.fullmatch(settings.twilio_from)
    )
    if through_service:
        return lambda _store: SenderAddress()
    return lambda store: SenderAddress(store.sms_sender)


PLUGIN = ChannelPlugin(
    spec=ChannelSpec(
        name=SmsChannel.name,
        parts=TemplateParts(text="text"),
        recipient=lambda customer: customer.phone,
        contact="phone",
        quiet_hours=True,
    ),
    requires=REQUIRED_SETTINGS,
    build=SmsChannel.from_settings,
    limits=lambda s: SendLimits(concurrency=s.sms_concurrency, rate_per_s=s.sms_rate_per_s),
    render_check=_render_check,
    # Twilio reports delivery to the status callback under NOTIFIER_PUBLIC_BASE_URL
    receipts_require=("public_base_url",),
    sender=_store_sender,
)
