"""The bearer token that guards ``/v1``.

Declared with FastAPI's ``HTTPBearer`` so the OpenAPI document says which routes need
it. The scheme name is case-insensitive (RFC 7235, section 2.1): ``bearer x`` is as good
as ``Bearer x``. The token itself is compared in constant time, and every refusal is the
same 401, so an answer never tells a wrong token from a missing one.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

UNAUTHORIZED_DETAIL = "missing or wrong bearer token"
_SCHEME = HTTPBearer(auto_error=False, description="`Authorization: Bearer <NOTIFIER_API_TOKEN>`")
#: what HTTPBearer found: the scheme matched without regard to case, and the rest
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_SCHEME)]


def bearer_guard(api_token: str) -> Callable[..., Awaitable[None]]:
    """A dependency that answers 401 unless ``Authorization: Bearer <api_token>`` is sent."""
    expected = api_token.encode()

    async def check(credentials: Credentials) -> None:
        if credentials is None or not hmac.compare_digest(
            credentials.credentials.encode(), expected
        ):
            raise HTTPException(
                status_code=401, detail=UNAUTHORIZED_DETAIL, headers={"WWW-Authenticate": "Bearer"}
            )

    return check
