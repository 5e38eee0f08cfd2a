"""Signed links a customer uses to say "fewer messages": one-click unsubscribe from a
category on a channel (``/u/{token}``, RFC 8058) and their preferences page
(``/preferences/{token}``).

Unlike the order-status link, whose URL names the order, these tokens carry their
subject: a mail client POSTs to the ``List-Unsubscribe`` URL as it is, so the token
itself must say who, which channel and which category. The subject is the customer id
(base64url, so any id fits a path segment) and, for an unsubscribe token, the channel
and category; ``notifier.signing`` signs it with purpose ``unsubscribe`` or
``preferences``, so neither opens the other, nor a tracking page, under the shared
secret (``NOTIFIER_TRACK_SECRET``). A link is a function of the event alone: its expiry
counts from the event's ``occurred_at`` (``core.links`` says why).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from notifier import signing
from notifier.contracts.preferences import ALERTS
from notifier.core.links import Links

UNSUBSCRIBE_PURPOSE = "unsubscribe"
PREFERENCES_PURPOSE = "preferences"
UNSUBSCRIBE_PATH = "/u/"
PREFERENCES_PATH = "/preferences/"


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """What an unsubscribe token names."""

    customer_id: str
    channel: str
    category: str


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def _unb64(text: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _subject(customer_id: str, channel: str, category: str) -> str:
    return f"{customer_id}\x00{channel}\x00{category}"


def read_unsubscribe(secret: str, token: str) -> Unsubscribe | signing.TokenProblem:
    """What a well-signed, unexpired unsubscribe token names, or why it is refused."""
    parts = token.split(".")
    if len(parts) != 5:
        return signing.TokenProblem.MALFORMED
    customer_id = _unb64(parts[0])
    if not customer_id:
        return signing.TokenProblem.MALFORMED
    channel, category = parts[1], parts[2]
    problem = signing.check(
        secret, UNSUBSCRIBE_PURPOSE, _subject(customer_id, channel, category), ".".join(parts[3:])
    )
    return problem or Unsubscribe(customer_id, channel, category)


def read_preferences(secret: str, token: str) -> str | signing.TokenProblem:
    """The customer a well-signed, unexpired preferences token names, or why it is refused."""
    parts = token.split(".")
    if len(parts) != 3:
        return signing.TokenProblem.MALFORMED
    customer_id = _unb64(parts[0])
    if not customer_id:
        return signing.TokenProblem.MALFORMED
    problem = signing.check(secret, PREFERENCES_PURPOSE, customer_id, ".".join(parts[1:]))
    return problem or customer_id


@dataclass(frozen=True, slots=True)
class OptOutLinks:
    """The unsubscribe and preferences links of one message."""

    base_url: str
    secret: str
    ttl_s: int

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("an opt-out link needs a signing secret")
        if self.ttl_s < 1:
            raise ValueError("an opt-out link must hold for at least a second")

    def unsubscribe_token(
        self, customer_id: str, channel: str, category: str, expires_at: int
    ) -> str:
        """A token that opts ``customer_id`` out of ``category`` on ``channel``."""
        mac = signing.mint(
            self.secret, UNSUBSCRIBE_PURPOSE, _subject(customer_id, channel, category), expires_at
        )
        return f"{_b64(customer_id)}.{channel}.{category}.{mac}"

    def preferences_token(self, customer_id: str, expires_at: int) -> str:
        """A token that opens ``customer_id``'s preferences page."""
        mac = signing.mint(self.secret, PREFERENCES_PURPOSE, customer_id, expires_at)
        return f"{_b64(customer_id)}.{mac}"

    def __call__(
        self, customer_id: str, channel: str, category: str, occurred_at: datetime
    ) -> Links:
        """``links.preferences`` for every message and ``links.unsubscribe`` for an alert."""
        expires_at = int(occurred_at.timestamp()) + self.ttl_s
        base = self.base_url.rstrip("/")
        preferences = f"{base}{PREFERENCES_PATH}{self.preferences_token(customer_id, expires_at)}"
        unsubscribe = None
        if category == ALERTS:
            token = self.unsubscribe_token(customer_id, channel, category, expires_at)
            unsubscribe = f"{base}{UNSUBSCRIBE_PATH}{token}"
        return {"preferences": preferences, "unsubscribe": unsubscribe}
