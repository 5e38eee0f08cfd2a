"""FCM HTTP v1 on the wire, as the FCM fake (``fcmfake.py``) speaks it.

What a send request must look like to be accepted (the checks FCM answers with 400
``INVALID_ARGUMENT``), the error bodies Google's APIs and the OAuth token endpoint
answer with (``FcmError`` details, ``Retry-After``), and an accepted message as the
device would get it. Kept apart from the server, which holds the state: issued
tokens, injected failures, the messages received. Development only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from aiohttp import web

#: what FCM and APNs accept for notification + data, and for ``apns-collapse-id``
MAX_PAYLOAD_BYTES = 4096
MAX_APNS_COLLAPSE_ID_BYTES = 64
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_TARGETS = ("token", "topic", "condition", "fid")
_MESSAGE_FIELDS = frozenset(
    {
        *_TARGETS,
        "name",
        "data",
        "notification",
        "android",
        "apns",
        "webpush",
        "fcm_options",
    }
)
_RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type"})


@dataclass(frozen=True, slots=True)
class _ErrorShape:
    http_status: int
    status: str
    message: str


class FcmFailure(StrEnum):
    """An error FCM answers with; the value is the ``FcmError.errorCode`` it carries."""

    #: 404: the app was uninstalled or the token expired; never send to it again
    UNREGISTERED = "UNREGISTERED"
    #: 400: the token (or another field) is malformed
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    #: 403: the token belongs to another Firebase project
    SENDER_ID_MISMATCH = "SENDER_ID_MISMATCH"
    #: 429: the project or the device is over its sending quota
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    #: 503: FCM is overloaded
    UNAVAILABLE = "UNAVAILABLE"
    #: 500: FCM failed internally
    INTERNAL = "INTERNAL"
    #: 401: the project's APNs certificate or web push key is invalid
    THIRD_PARTY_AUTH_ERROR = "THIRD_PARTY_AUTH_ERROR"


_SHAPES = {
    FcmFailure.UNREGISTERED: _ErrorShape(404, "NOT_FOUND", "Requested entity was not found."),
    FcmFailure.INVALID_ARGUMENT: _ErrorShape(
        400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token"
    ),
    FcmFailure.SENDER_ID_MISMATCH: _ErrorShape(403, "PERMISSION_DENIED", "SenderId mismatch"),
    FcmFailure.QUOTA_EXCEEDED: _ErrorShape(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute'.",
    ),
    FcmFailure.UNAVAILABLE: _ErrorShape(
        503, "UNAVAILABLE", "The service is currently unavailable."
    ),
    FcmFailure.INTERNAL: _ErrorShape(500, "INTERNAL", "Internal error encountered."),
    FcmFailure.THIRD_PARTY_AUTH_ERROR: _ErrorShape(
        401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"
    ),
}


@dataclass(frozen=True, slots=True)
class ReceivedPush:
    """One message FCM accepted, as the device would get it."""

    message_id: str
    project_id: str
    token: str
    title: str | None
    body: str | None
    data: dict[str, str]
    collapse_key: str | None
    apns_headers: dict[str, str]
    #: when the fake accepted it, ISO 8601 in UTC
    received_at: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for the dev outbox page."""
        return asdict(self)


def received_push(project: str, message_id: str, message: dict[str, Any]) -> ReceivedPush:
    """An accepted ``message`` (already checked by :func:`shape_problem`), as kept."""
    notification = message.get("notification", {})
    return ReceivedPush(
        message_id=message_id,
        project_id=project,
        token=str(message.get("token", "")),
        title=notification.get("title"),
        body=notification.get("body"),
        data=dict(message.get("data", {})),
        collapse_key=message.get("android", {}).get("collapse_key"),
        apns_headers=dict(message.get("apns", {}).get("headers", {})),
        received_at=datetime.now(UTC).isoformat(),
    )


def shape_problem(payload: Any) -> str | None:
    """What FCM would refuse with 400 INVALID_ARGUMENT, or None."""
    if not isinstance(payload, dict) or not isinstance(payload.get("message"), dict):
        return "Invalid JSON payload received. Required field 'message' is missing."
    unknown = set(payload) - {"message", "validate_only"}
    if unknown:
        return f'Invalid JSON payload received. Unknown name "{sorted(unknown)[0]}".'
    if not isinstance(payload.get("validate_only", False), bool):
        return "Invalid value at 'validate_only' (TYPE_BOOL)."
    message: dict[str, Any] = payload["message"]
    unknown = set(message) - _MESSAGE_FIELDS
    if unknown:
        return f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" at 'message'."
    targets = [t for t in _TARGETS if t in message]
    if len(targets) != 1:
        return "Exactly one of token, topic, condition or fid must be set."
    if not isinstance(message[targets[0]], str) or not message[targets[0]]:
        return f"Invalid value at 'message.{targets[0]}'."
    return _content_problem(message)


def _content_problem(message: dict[str, Any]) -> str | None:
    data = message.get("data", {})
    if not _is_str_dict(data):
        return "Invalid value at 'message.data': values must be strings."
    reserved = [k for k in data if k in _RESERVED_DATA_KEYS or k.startswith(("google", "gcm"))]
    if reserved:
        return f"Invalid data payload key: {reserved[0]}"
    notification = message.get("notification", {})
    if not _is_str_dict(notification) or set(notification) - {"title", "body", "image"}:
        return "Invalid value at 'message.notification'."
    android = message.get("android", {})
    if not isinstance(android, dict) or not isinstance(android.get("collapse_key", ""), str):
        return "Invalid value at 'message.android.collapse_key'."
    apns = message.get("apns", {})
    headers = apns.get("headers", {}) if isinstance(apns, dict) else None
    if not isinstance(headers, dict) or not _is_str_dict(headers):
        return "Invalid value at 'message.apns.headers'."
    collapse_id = headers.get("apns-collapse-id", "")
    if len(collapse_id.encode()) > MAX_APNS_COLLAPSE_ID_BYTES:
        return "apns-collapse-id must not exceed 64 bytes."
    counted = json.dumps(
        {"notification": notification, "data": data}, ensure_ascii=False, separators=(",", ":")
    )
    if len(counted.encode()) > MAX_PAYLOAD_BYTES:
        return "Message is too big"
    return None


def _is_str_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def google_error(
    code: int,
    status: str,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    retry_after: float | None = None,
) -> web.Response:
    """The error body every Google API answers with (``google.rpc.Status`` as JSON)."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return web.json_response({"error": error}, status=code, headers=headers)


def fcm_error(failure: FcmFailure, *, retry_after: float | None = None) -> web.Response:
    """FCM's answer for ``failure``, with the ``FcmError`` detail firebase-admin maps by."""
    shape = _SHAPES[failure]
    details: list[dict[str, Any]] = [{"@type": _FCM_ERROR_TYPE, "errorCode": failure.value}]
    if failure is FcmFailure.INVALID_ARGUMENT:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message.token", "description": shape.message}],
            }
        )
    return google_error(
        shape.http_status, shape.status, shape.message, details=details, retry_after=retry_after
    )


def invalid(message: str) -> web.Response:
    """400 INVALID_ARGUMENT for a request FCM cannot parse or accept, saying why."""
    return google_error(
        400,
        "INVALID_ARGUMENT",
        message,
        details=[{"@type": _FCM_ERROR_TYPE, "errorCode": "INVALID_ARGUMENT"}],
    )


def oauth_error(error: str, description: str) -> web.Response:
    """The token endpoint's refusal of a grant, as google-auth reads it."""
    return web.json_response({"error": error, "error_description": description}, status=400)
