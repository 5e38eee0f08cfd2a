"""``notifier feed-token CUSTOMER_ID``: a token that opens one customer's feed, for their
app or browser (``Authorization: Bearer`` or ``?token=``), signed with
``NOTIFIER_FEED_SECRET``. Printed on stdout only; never logged.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from notifier.commands.common import fail, settings_or_exit

DEFAULT_TTL_S = 7 * 24 * 3600


def feed_token_cmd(
    customer_id: str,
    ttl: Annotated[
        int, typer.Option(min=60, max=366 * 24 * 3600, help="Seconds the token is good for")
    ] = DEFAULT_TTL_S,
) -> None:
    """Print a token that opens CUSTOMER_ID's in-app feed (and no other) until it expires."""
    from notifier import signing
    from notifier.api.feed_auth import FEED_PURPOSE

    secret = settings_or_exit().feed_secret
    if secret is None:
        raise fail("NOTIFIER_FEED_SECRET is not set: customer feed tokens cannot be signed")
    if not customer_id:
        raise fail("CUSTOMER_ID is empty")
    expires_at = int(time.time()) + ttl
    typer.echo(signing.mint(secret.get_secret_value(), FEED_PURPOSE, customer_id, expires_at))
