"""Delivery receipts from providers: ``POST /v1/receipts/twilio``.

Twilio cannot send our bearer token, so this route is outside the token check and
authenticated by ``X-Twilio-Signature`` instead (HMAC over the exact URL Twilio called
and the form fields, keyed with the account's auth token). The URL is rebuilt from
``NOTIFIER_PUBLIC_BASE_URL``, which must be what Twilio was given: behind a proxy the
request's own URL differs. A forgery gets 403 and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.api.responses import error_responses
from notifier.channels.twilio_receipts import parse_status_callback, verify_twilio_signature
from notifier.delivery.ledger import find_by_provider_id, record_receipt
from notifier.metrics import Metrics

log = logging.getLogger(__name__)

TWILIO_PATH = "/v1/receipts/twilio"
#: what Twilio posts, as far as this route reads it; Twilio adds fields over time
STATUS_CALLBACK_FORM = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "properties": {
                    name: {"type": "string"}
                    for name in (
                        "MessageSid",
                        "MessageStatus",
                        "ErrorCode",
                        "AccountSid",
                        "From",
                        "To",
                    )
                },
                "additionalProperties": {"type": "string"},
            }
        }
    },
}


def build_receipts_router(
    engine: AsyncEngine,
    metrics: Metrics,
    *,
    twilio_channel: str | None,
    twilio_auth_token: str | None,
    public_base_url: str | None,
    on_requeued: Callable[[], None],
) -> APIRouter:
    """The receipt routes; Twilio's answers 404 while no running channel sends through
    Twilio (``twilio_channel``, the name its receipts are counted under)."""
    router = APIRouter(tags=["receipts"])

    @router.post(
        TWILIO_PATH,
        status_code=204,
        openapi_extra={"requestBody": STATUS_CALLBACK_FORM},
        responses=error_responses(
            400, 403, 404, 413, s404="No running channel sends through Twilio"
        ),
    )
    async def twilio_receipt(request: Request) -> Response:
        """A Twilio status callback: moves the SMS to delivered, undelivered or failed.

        Authenticated by ``X-Twilio-Signature``, not the bearer token."""
        if twilio_auth_token is None or twilio_channel is None:
            raise HTTPException(status_code=404, detail="no channel sends through Twilio")
        # the app's body limit (notifier.api.http) has bounded what this reads
        body = await request.body()
        try:
            # Twilio posts application/x-www-form-urlencoded; parsed here rather than
            # with Starlette's form parser, which needs python-multipart for this too
            params = dict(
                parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            )
        except UnicodeDecodeError:
            raise HTTPException(status_code=400, detail="receipt is not UTF-8") from None
        url = _called_url(request, public_base_url)
        signature = request.headers.get("x-twilio-signature", "")
        if not signature or not verify_twilio_signature(twilio_auth_token, url, params, signature):
            log.warning("twilio receipt refused: bad signature")
            metrics.receipts.labels(twilio_channel, "forged").inc()
            raise HTTPException(status_code=403, detail="invalid X-Twilio-Signature")
        receipt = parse_status_callback(params)
        if receipt is None:  # queued, sent, …: on its way, nothing to record
            return Response(status_code=204)
        notification_id = request.query_params.get("n") or await find_by_provider_id(
            engine, receipt.sid
        )
        if notification_id is None:
            log.info("twilio receipt for unknown message %s ignored", receipt.sid)
            return Response(status_code=204)
        result = await record_receipt(
            engine, notification_id, receipt.sid, receipt.status.value, receipt.error_code
        )
        metrics.receipts.labels(twilio_channel, receipt.status.value).inc()
        if result.changed and result.channel is not None:
            metrics.count(result.channel, result.template or "", receipt.status.value, "twilio")
            log.info("notification %s: receipt %s", notification_id, receipt.status.value)
        if result.fell_back:
            on_requeued()
        return Response(status_code=204)

    return router


def _called_url(request: Request, public_base_url: str | None) -> str:
    if public_base_url is None:
        return str(request.url)
    query = request.url.query
    return public_base_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")
