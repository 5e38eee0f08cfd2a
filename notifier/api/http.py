"""The bare HTTP app every route is mounted on: no docs pages, one request-body limit.

Swagger UI and ReDoc load their scripts from a public CDN, which a self-hosted
deployment often cannot reach (a blank page); the document they would show is served
as it is at ``/openapi.json``. Every request body is bounded (``MAX_BODY_BYTES``):
the largest legitimate one, a Twilio status callback, is about 1 KB, and an unbounded
read lets one client fill the process's memory.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024
TOO_LARGE = f"request body over {MAX_BODY_BYTES} bytes, the limit of this API"


def new_app(*, version: str) -> FastAPI:
    """The FastAPI app with no routes yet."""
    app = FastAPI(
        title="notifier",
        version=version,
        docs_url=None,
        redoc_url=None,
        description="Order notifications: what happened to an order and its messages, "
        "delivery statistics, erasure, and provider receipts.",
    )
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    return app


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` is answered 413 and never read whole.

    A declared ``Content-Length`` over the limit is refused before the route runs; a
    body without one (chunked) is counted as it arrives and refused at the first byte
    over, as an ``HTTPException`` raised where the route reads it.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting its body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _send_too_large(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(status_code=413, detail=TOO_LARGE)
            return message

        await self.app(scope, counted, send)


async def _send_too_large(send: Send) -> None:
    body = json.dumps({"detail": TOO_LARGE}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
