"""Twilio status callbacks (delivery receipts): checking their signature and reading
what they say, in the ledger's terms. The route is ``notifier.api.receipts``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from notifier.core.model import NotificationStatus


@dataclass(frozen=True, slots=True)
class TwilioReceipt:
    """Twilio's final word on one message, in the ledger's terms."""

    sid: str
    #: DELIVERED, UNDELIVERED or FAILED
    status: NotificationStatus
    #: Twilio's error code for an unsuccessful message (``30003`` unreachable handset...)
    error_code: str | None


#: Twilio's final statuses; queued, sending, sent, accepted, scheduled, read... say nothing
FINAL_STATUSES: Mapping[str, NotificationStatus] = {
    "delivered": NotificationStatus.DELIVERED,
    "undelivered": NotificationStatus.UNDELIVERED,
    "failed": NotificationStatus.FAILED,
}


def verify_twilio_signature(
    auth_token: str, url: str, params: Mapping[str, str], signature: str
) -> bool:
    """Check ``X-Twilio-Signature`` over the URL Twilio called and the form fields.

    ``url`` must be the one Twilio was given (the status callback built from
    ``public_base_url``, query included), not the one a reverse proxy passed on.
    """
    if not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


def parse_status_callback(params: Mapping[str, str]) -> TwilioReceipt | None:
    """The receipt a status callback carries, or None when it is not final (or has no sid)."""
    sid = params.get("MessageSid") or params.get("SmsSid")
    status = FINAL_STATUSES.get(params.get("MessageStatus") or params.get("SmsStatus") or "")
    if not sid or status is None:
        return None
    return TwilioReceipt(sid=sid, status=status, error_code=params.get("ErrorCode") or None)
