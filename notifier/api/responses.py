"""What the API's errors look like, for the routes and for the OpenAPI document.

Two shapes, as FastAPI has them: an error the service raises itself is
``{"detail": "<one sentence>"}``; a request that fails validation (a bad query
parameter included) is a 422 whose ``detail`` is a list naming each bad field. Each
route lists the statuses it can answer, so the document and the service agree (the
schemathesis test holds them to it).
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel


class ErrorBody(BaseModel):
    """An error the service raised itself."""

    detail: str


#: why each status happens, as the document says it
_WHY = {
    400: "The body cannot be read (not UTF-8)",
    401: "Missing or wrong bearer token (`NOTIFIER_API_TOKEN`)",
    403: "The request's signature does not match",
    404: "Not found",
    413: "The request body is over the API's limit",
}


def error_responses(*statuses: int, **why: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each an :class:`ErrorBody`.

    ``why`` overrides a description, keyed ``s404=...``.
    """
    return {
        status: {
            "model": ErrorBody,
            "description": why.get(f"s{status}", _WHY.get(status, "Error")),
        }
        for status in statuses
    }


def query_error(name: str, message: str, value: str) -> RequestValidationError:
    """A 422 for one query parameter in FastAPI's own shape, for checks a type cannot say."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", name), "msg": message, "input": value}]
    )
