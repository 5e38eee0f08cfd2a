"""Who may open a customer's feed: the operator (``NOTIFIER_API_TOKEN``), or the
customer with a token of their own.

A customer token is ``signing.mint(NOTIFIER_FEED_SECRET, "feed", customer_id, expiry)``
(``notifier feed-token`` prints one). It is sent as ``Authorization: Bearer`` or as
``?token=``, because a browser's EventSource cannot send headers. The answers:

    operator token                                 allowed
    a customer token for this customer             allowed
    a well-formed token signed for someone else    403
    expired, malformed, missing                    401
    a customer token, NOTIFIER_FEED_SECRET unset    401, saying so

Tokens are compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import HTTPException, Query

from notifier import signing
from notifier.api.auth import Credentials

FEED_PURPOSE = "feed"
NO_SECRET = "customer feed tokens are not accepted here: NOTIFIER_FEED_SECRET is not set"
NOT_THIS_FEED = "this token does not open this customer's feed"
_REFUSED = {
    signing.TokenProblem.MALFORMED: "missing or unreadable token",
    signing.TokenProblem.EXPIRED: "the token has expired",
}

TokenQuery = Annotated[
    str | None,
    Query(
        description="a customer feed token, for clients that cannot send headers (EventSource)",
        max_length=200,
    ),
]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def feed_guard(api_token: str | None, feed_secret: str | None) -> Callable[..., Awaitable[None]]:
    """A dependency that lets the operator, or the customer the path names, through."""
    operator = api_token.encode() if api_token is not None else None

    async def check(customer_id: str, credentials: Credentials, token: TokenQuery = None) -> None:
        if operator is None:
            return  # the API is open (no NOTIFIER_API_TOKEN), as every /v1 route is
        sent = credentials.credentials if credentials is not None else token
        if sent is None:
            raise _unauthorized("missing bearer token or ?token=")
        if hmac.compare_digest(sent.encode(), operator):
            return
        if feed_secret is None:
            raise _unauthorized(NO_SECRET)
        problem = signing.check(feed_secret, FEED_PURPOSE, customer_id, sent)
        if problem is None:
            return
        if problem is signing.TokenProblem.FORGED:
            raise HTTPException(status_code=403, detail=NOT_THIS_FEED)
        raise _unauthorized(_REFUSED[problem])

    return check
