"""What the HTTP API promises at its edges: the bearer scheme in any case, channel names it
knows, the content type of ``/metrics``, no docs pages that need a CDN, and a bound on
every request body. The service in-process (httpx on the ASGI app), real NATS, SQLite
and PostgreSQL; the Twilio receipt route is on (Twilio fake)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from notifier.api.http import MAX_BODY_BYTES
from notifier.devtools.natsserver import NatsServer
from notifier.devtools.twiliofake import TwilioFake
from tests.integration.conftest import TWILIO_TOKEN
from tests.integration.helpers import channel_settings, running, settings_for

TOKEN = "s3cret-token"
RECEIPTS = "/v1/receipts/twilio"


async def test_the_bearer_scheme_is_matched_in_any_case(
    nats: NatsServer, database_url: str
) -> None:
    settings = settings_for(nats.url, database_url, None, api_token=TOKEN)
    async with running(settings) as (_service, client):
        for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
            response = await client.get(
                "/v1/stats/delivery", headers={"Authorization": f"{scheme} {TOKEN}"}
            )
            assert response.status_code == 200, (scheme, response.text)
        for refused in (f"Basic {TOKEN}", f"bearer {TOKEN}x", "bearer", TOKEN, ""):
            response = await client.get("/v1/stats/delivery", headers={"Authorization": refused})
            assert response.status_code == 401, refused
            assert response.json() == {"detail": "missing or wrong bearer token"}
            assert response.headers["www-authenticate"] == "Bearer"


async def test_an_unknown_channel_is_a_422_that_lists_the_known_ones(
    nats: NatsServer, database_url: str
) -> None:
    async with running(settings_for(nats.url, database_url, None)) as (_service, client):
        response = await client.get("/v1/stats/delivery", params={"channel": "fax"})
        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", "channel"]
        assert error["msg"] == "unknown channel; one of email, inapp, push, sms, webhook"
        # a known channel that is not configured here still has (empty) stats
        webhook = await client.get("/v1/stats/delivery", params={"channel": "webhook"})
        assert webhook.status_code == 200
        assert webhook.json()["total"]["total"] == 0
        # the document lists the same names
        document = (await client.get("/openapi.json")).json()
        parameters = document["paths"]["/v1/stats/delivery"]["get"]["parameters"]
        channel = next(p for p in parameters if p["name"] == "channel")
        assert channel["schema"]["enum"] == ["email", "inapp", "push", "sms", "webhook"]


async def test_metrics_are_prometheus_text_in_the_service_and_its_document(
    nats: NatsServer, database_url: str
) -> None:
    async with running(settings_for(nats.url, database_url, None)) as (_service, client):
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain;")
        assert "# TYPE notifier_events_total counter" in response.text
        document = (await client.get("/openapi.json")).json()
        content = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        assert list(content) == ["text/plain"]


async def test_the_docs_pages_are_gone_and_the_document_stays(
    nats: NatsServer, database_url: str
) -> None:
    async with running(settings_for(nats.url, database_url, None)) as (_service, client):
        for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            assert (await client.get(page)).status_code == 404, page
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        document = response.json()
        assert "/v1/orders/{order_id}" in document["paths"]
        assert "cdn" not in response.text.lower()
        # the 422 everyone gets, a bad window included, is FastAPI's list of field errors
        bad = await client.get("/v1/stats/delivery", params={"window": "soon"})
        assert bad.status_code == 422
        [error] = bad.json()["detail"]
        assert error["loc"] == ["query", "window"]
        assert error["msg"] == "window 'soon' is not a duration like 90s, 15m, 1h or 7d"
        responses = document["paths"]["/v1/stats/delivery"]["get"]["responses"]
        assert responses["422"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/HTTPValidationError"
        }


def _signed(form: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """A form body and headers as Twilio would post them to the in-process app."""
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(f"http://t{RECEIPTS}", form)
    return urlencode(form).encode(), {
        "X-Twilio-Signature": str(signature),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def _receipt(padding: int) -> dict[str, str]:
    return {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered", "Pad": "x" * padding}


async def test_a_request_body_over_the_limit_is_a_413_read_no_further(
    nats: NatsServer, twilio: TwilioFake, database_url: str
) -> None:
    settings = channel_settings(nats.url, database_url, None, twilio=twilio)
    async with running(settings) as (_service, client):
        # just under the limit: read, checked and answered (an unknown message: ignored)
        body, headers = _signed(_receipt(MAX_BODY_BYTES - 200))
        assert len(body) <= MAX_BODY_BYTES
        ok = await client.post(RECEIPTS, content=body, headers=headers)
        assert ok.status_code == 204, ok.text

        # over it, with a Content-Length: refused before the route runs
        body, headers = _signed(_receipt(MAX_BODY_BYTES))
        assert len(body) > MAX_BODY_BYTES
        declared = await client.post(RECEIPTS, content=body, headers=headers)
        assert declared.status_code == 413
        assert declared.json() == {
            "detail": f"request body over {MAX_BODY_BYTES} bytes, the limit of this API"
        }

        # over it, chunked (no Content-Length): refused at the first chunk past the limit
        body, headers = _signed(_receipt(4 * MAX_BODY_BYTES))
        pieces = [body[start : start + 8192] for start in range(0, len(body), 8192)]
        taken: list[bytes] = []

        async def chunks() -> AsyncIterator[bytes]:
            for piece in pieces:
                taken.append(piece)
                yield piece

        chunked = await client.post(RECEIPTS, content=chunks(), headers=headers)
        assert chunked.status_code == 413
        assert chunked.json()["detail"].startswith(f"request body over {MAX_BODY_BYTES} bytes")
        assert len(taken) == MAX_BODY_BYTES // 8192 + 1 < len(pieces)


async def test_receipt_route_documents_its_form_and_its_refusals(
    nats: NatsServer, twilio: TwilioFake, database_url: str
) -> None:
    settings = channel_settings(nats.url, database_url, None, twilio=twilio)
    async with running(settings) as (_service, client):
        document: dict[str, Any] = (await client.get("/openapi.json")).json()
        post = document["paths"][RECEIPTS]["post"]
        assert "application/x-www-form-urlencoded" in post["requestBody"]["content"]
        assert {"204", "400", "403", "404", "413"} <= set(post["responses"])
        # no bearer token is asked of Twilio
        assert "security" not in post
        forged = await client.post(
            RECEIPTS,
            content=b"MessageSid=SM1&MessageStatus=delivered",
            headers={
                "X-Twilio-Signature": "forged",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        assert forged.status_code == 403
