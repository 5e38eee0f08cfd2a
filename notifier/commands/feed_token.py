"""``notifier feed-token CUSTOMER_ID``: a token that opens one customer's feed, for their
app or browser (``Authorization: Bearer`` or ``?token=``), signed with
``NOTIFIER_FEED_SECRET``. Printed on stdout only; never logged.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from notifier.commands.common import DEV_DIR, DEV_NATS_URL_FILE, fail, settings_or_exit

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

    configured = settings_or_exit().feed_secret
    secret = configured.get_secret_value() if configured is not None else _dev_secret()
    if secret is None:
        raise fail("NOTIFIER_FEED_SECRET is not set: customer feed tokens cannot be signed")
    if not customer_id:
        raise fail("CUSTOMER_ID is empty")
    expires_at = int(time.time()) + ttl
    typer.echo(signing.mint(secret, FEED_PURPOSE, customer_id, expires_at))


def _dev_secret() -> str | None:
    """The feed secret of a ``notifier dev`` running in this directory (it keeps one in
    ``.notifier-dev/``), so a token printed in another shell opens its feeds; None when
    no dev server runs here."""
    from notifier.devtools.devdefaults import SECRETS_FILE

    kept = DEV_DIR / SECRETS_FILE
    if not DEV_NATS_URL_FILE.is_file() or not kept.is_file():
        return None
    try:
        secret = json.loads(kept.read_text()).get("feed_secret")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(secret, str) or not secret:
        return None
    typer.echo(
        f"notifier: signed with the feed secret of the running `notifier dev` ({kept})", err=True
    )
    return secret
