"""Twilio's Messages API on the wire, as the Twilio fake (``twiliofake.py``) speaks it.

What Twilio checks in a create-message form and the error codes it answers with,
the Message resource of its 201 answer, the parameters of a status callback, and
Basic auth: Twilio's rules, stateless. The server, its scripted numbers and failures,
and the callbacks it sends are ``twiliofake.py``'s. Development only.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

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


def form_refusal(form: dict[str, str]) -> Failure | None:
    """What Twilio refuses in these form fields whatever the number, in Twilio's order."""
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
    if not is_e164(to):
        return invalid_number(to)
    return None


def invalid_number(to: str) -> Failure:
    """Twilio's 21211, for a ``To`` that is not a phone number it can send to."""
    return Failure(400, 21211, f"The 'To' number {to} is not a valid phone number.")


def new_message(form: dict[str, str], auth_user: str) -> FakeMessage:
    """The message Twilio creates from an accepted form (see :func:`form_refusal`)."""
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


def message_resource(account_sid: str, message: FakeMessage) -> dict[str, Any]:
    """The Message resource as Twilio's 201 answer has it."""
    now = format_datetime(datetime.now(UTC))
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{message.sid}"
    return {
        "account_sid": account_sid,
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


def callback_params(
    account_sid: str, message: FakeMessage, status: str, error_code: str | None
) -> dict[str, str]:
    """The form fields of a status callback saying ``status`` for ``message``."""
    params = {
        "AccountSid": account_sid,
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
    return params


def basic_auth(header: str) -> tuple[str, str] | None:
    """The (user, password) of a Basic ``Authorization`` header, or None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def unauthorized() -> web.Response:
    """Twilio's 401 (code 20003) for a wrong account SID or auth token."""
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
