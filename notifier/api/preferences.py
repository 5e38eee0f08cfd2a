"""``/v1/customers/{customer_id}/preferences``: read and replace one customer's
preferences document (``contracts.preferences``), under the API's bearer token.

The document holds contacts, so a refused one is answered without echoing it: the 422
names each bad field and says what is wrong, but carries neither the ``input`` FastAPI
would quote nor a value inside a message (:class:`QuietValidationRoute`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.api.responses import error_responses
from notifier.contracts.preferences import CustomerPreferences
from notifier.redaction import redact
from notifier.store.preferences import get_preferences, put_preferences


class QuietValidationRoute(APIRoute):
    """A route whose 422s keep each error's ``loc``, ``msg`` and ``type`` only, with any
    value the message quotes replaced by its kind."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The standard handler, its validation errors stripped of what was sent."""
        handler = super().get_route_handler()

        async def quiet(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise RequestValidationError([_quiet(e) for e in exc.errors()]) from None

        return quiet


def _quiet(error: Any) -> dict[str, Any]:
    sent = error.get("input")
    known = [sent] if isinstance(sent, str) else []
    message = redact(str(error.get("msg", "")), known)
    return {"type": error.get("type", "value_error"), "loc": error.get("loc", ()), "msg": message}


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


Engine = Annotated[AsyncEngine, Depends(_engine)]


def build_preferences_router() -> APIRouter:
    """The two routes; mounted under ``/v1``, so they take its bearer token."""
    router = APIRouter(route_class=QuietValidationRoute, tags=["preferences"])

    @router.get("/customers/{customer_id}/preferences")
    async def read(customer_id: str, engine: Engine) -> CustomerPreferences:
        """What the customer stored; every field unset (the events decide) when nothing."""
        return await get_preferences(engine, customer_id) or CustomerPreferences()

    @router.put(
        "/customers/{customer_id}/preferences",
        responses=error_responses(400, s400="The body is not JSON"),
    )
    async def replace(
        customer_id: str, document: CustomerPreferences, engine: Engine
    ) -> CustomerPreferences:
        """Replace the whole document. ``channels.transactional`` keeps at least one
        channel when set; the next message planned or sent honours it."""
        await put_preferences(engine, customer_id, document)
        return document

    return router
