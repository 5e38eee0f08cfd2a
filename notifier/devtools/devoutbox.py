"""``GET /dev/outbox/sms`` and ``/dev/outbox/push``: what the dev fakes of Twilio and FCM
received, so a newcomer sees every channel's messages as customers would (development
only; email stays at ``/dev/outbox``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from notifier.devtools.fcmfake import FcmFake
from notifier.devtools.twiliofake import TwilioFake


def channel_outbox_router(twilio: TwilioFake, fcm: FcmFake) -> APIRouter:
    """List (``GET``) and clear (``DELETE``) the SMS and push the fakes received."""
    router = APIRouter(prefix="/dev/outbox", tags=["dev"])

    @router.get("/sms")
    async def list_sms() -> list[dict[str, Any]]:
        return list(twilio.outbox())

    @router.get("/push")
    async def list_push() -> list[dict[str, Any]]:
        return list(fcm.outbox())

    @router.delete("/sms", status_code=204)
    async def clear_sms() -> None:
        twilio.clear()

    @router.delete("/push", status_code=204)
    async def clear_push() -> None:
        fcm.clear()

    return router
