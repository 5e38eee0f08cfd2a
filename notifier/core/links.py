"""Links a message carries to pages this service serves: the order-status page.

A link is part of the template context, and the context is hashed to tell whether a
revised event changes what the customer was told (``DraftContext.digest_to``). So a
link is a function of the event alone: its expiry counts from the event's
``occurred_at``, never from the moment it is rendered, and the same event renders the
same link however often it is replayed. The composition root builds the link maker
from the settings; the pure stages are handed it and read no settings themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from notifier import signing
from notifier.contracts.events import OrderEvent

#: the signing purpose of an order-status page token (its subject is the order id)
TRACK_PURPOSE = "track"
#: where the order-status page is served
TRACK_PATH = "/track/"

#: link name → URL, or ``None`` when that page is not configured; templates see ``links``
Links = Mapping[str, str | None]
#: the links one event's messages carry
LinkMaker = Callable[[OrderEvent], Links]


def no_links(_event: OrderEvent) -> Links:
    """What templates see when no public base URL or tracking secret is set."""
    return {"track": None}


@dataclass(frozen=True, slots=True)
class TrackLinks:
    """Signed, expiring links to ``/track/{order_id}``."""

    base_url: str
    secret: str
    ttl_s: int

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("a tracking link needs a signing secret")
        if self.ttl_s < 1:
            raise ValueError("a tracking link must hold for at least a second")

    def url(self, order_id: str, occurred_at: datetime) -> str:
        """The page of ``order_id``, open until ``ttl_s`` after ``occurred_at``."""
        expires_at = int(occurred_at.timestamp()) + self.ttl_s
        token = signing.mint(self.secret, TRACK_PURPOSE, order_id, expires_at)
        return f"{self.base_url.rstrip('/')}{TRACK_PATH}{quote(order_id, safe='')}?t={token}"

    def __call__(self, event: OrderEvent) -> Links:
        """The links of one event's messages."""
        return {"track": self.url(event.order_id, event.occurred_at)}
