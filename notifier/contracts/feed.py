"""The in-app feed on the wire: what one feed item looks like to a shopper's app, and
the core NATS subject that announces new items to every replica serving a live stream.

A feed item is one notification on the in-app channel, kept for the customer; its id
is the notification's id, so a redelivered dispatch finds the item it already made.
The subject is per customer and hashed: customer ids may hold characters a subject
cannot (dots, spaces), and a subject seen in NATS monitoring names nobody.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: ``feed.<sha256(customer id), 32 hex>``: one subject per customer, core NATS (no stream)
FEED_SUBJECT_PREFIX = "feed"


def feed_subject(customer_id: str) -> str:
    """The subject new items of ``customer_id``'s feed are announced on."""
    digest = hashlib.sha256(customer_id.encode("utf-8")).hexdigest()[:32]
    return f"{FEED_SUBJECT_PREFIX}.{digest}"


@dataclass(frozen=True, slots=True)
class NewFeedItem:
    """An item to add to a feed; ``id`` is the notification's id."""

    id: str
    customer_id: str
    order_id: str
    template: str
    title: str
    body: str
    link: str | None


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One item of a customer's feed. ``seq`` orders the feed (newest is highest) and is
    never shown: cursors wrap it, and stream events are named by ``id``."""

    seq: int
    id: str
    customer_id: str
    title: str
    body: str
    link: str | None
    template: str
    order_id: str
    created_at: datetime
    read: bool

    def as_json(self) -> dict[str, Any]:
        """The ITEM of the feed API and of each stream event."""
        return {
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "link": self.link,
            "template": self.template,
            "order_id": self.order_id,
            "created_at": self.created_at.isoformat(),
            "read": self.read,
        }

    def announcement(self) -> dict[str, Any]:
        """What is published on :func:`feed_subject`: the item and its place in the feed."""
        return {"seq": self.seq, "item": self.as_json()}
