"""In-app: each notification becomes an item of the customer's feed, read by their app
or browser through ``/v1/customers/{id}/feed`` and its live stream.

No provider: the message is kept in the service's own database and announced on core
NATS to whichever replica serves the customer's stream (``notifier.delivery.feed``
does both; this module only says what an item is made of). Every customer can be told
in-app, so the recipient is the customer's id, unless ``customer.channels`` leaves it
out. Parts: ``inapp.title.j2`` (one line), ``inapp.body.j2`` (plain text) and
``inapp.link.j2``, which renders the URL the item opens, or nothing.

An item is written once per notification id: a redelivered dispatch finds the item it
made before, announces it again (a crash may have come between the two) and succeeds.

How failures map:

    the feed or NATS cannot be reached          TransientDeliveryError
    no title or body, too long, link not a URL  PermanentDeliveryError
"""

from __future__ import annotations

import re
from typing import ClassVar

from notifier.channels.base import (
    ChannelPlugin,
    FeedWriter,
    OutboundMessage,
    SendLimits,
    SendReceipt,
)
from notifier.config import Settings
from notifier.contracts.channels import ChannelSpec, TemplateParts
from notifier.contracts.feed import NewFeedItem
from notifier.errors import ConfigError, PermanentDeliveryError

#: what a feed item may hold: a title is a line of a list, a body a few sentences
TITLE_MAX_CHARS = 200
BODY_MAX_CHARS = 2000
LINK_MAX_CHARS = 2000
_URL = re.compile(r"https?://\S+")


def render_problem(title: str | None, body: str) -> str | None:
    """What makes a rendering unusable as a feed item, or None."""
    if not title:
        return "the title is empty"
    if len(title) > TITLE_MAX_CHARS:
        return f"the title is {len(title)} characters, over {TITLE_MAX_CHARS}"
    if not body:
        return "the body is empty"
    if len(body) > BODY_MAX_CHARS:
        return f"the body is {len(body)} characters, over {BODY_MAX_CHARS}"
    return None


def feed_item(message: OutboundMessage) -> NewFeedItem:
    """The feed item a rendered in-app message is; raises ``PermanentDeliveryError``
    when it cannot be one."""
    problem = render_problem(message.subject, message.text)
    link = (message.html or "").strip() or None
    if (
        problem is None
        and link is not None
        and (len(link) > LINK_MAX_CHARS or not _URL.fullmatch(link))
    ):
        problem = "the link part renders something that is not an http(s) URL"
    if problem is not None:
        raise PermanentDeliveryError(problem, code="invalid_message")
    return NewFeedItem(
        id=message.notification_id,
        customer_id=message.to,
        order_id=message.order_id,
        template=message.template,
        title=message.subject or "",
        body=message.text,
        link=link,
    )


class InAppChannel:
    """The ``inapp`` channel: hands each message to the feed as an item."""

    name: ClassVar[str] = "inapp"
    provider: ClassVar[str] = "feed"
    breaker_per_recipient: ClassVar[bool] = False

    def __init__(self, feed: FeedWriter) -> None:
        self._feed = feed

    async def start(self) -> None:
        """Connect the feed's announcements."""
        await self._feed.start()

    async def send(self, message: OutboundMessage) -> SendReceipt:
        """Keep the message as the customer's feed item and announce it."""
        await self._feed.write(feed_item(message))
        return SendReceipt(provider=self.provider, provider_message_id=message.notification_id)

    async def close(self) -> None:
        """Let announcements in flight go out."""
        await self._feed.close()


def _without_feed(_settings: Settings) -> InAppChannel:
    raise ConfigError("the inapp channel writes to the service's feed: build it with build_service")


PLUGIN = ChannelPlugin(
    spec=ChannelSpec(
        name=InAppChannel.name,
        # the link part renders the URL the item opens (``links.track``), or nothing
        parts=TemplateParts(subject="title", text="body", html="link"),
        recipient=lambda customer: customer.id,
        contact="feed",
        reaches_everyone=True,
    ),
    requires=(),
    build=_without_feed,
    limits=lambda s: SendLimits(concurrency=s.inapp_concurrency, rate_per_s=0.0),
    render_check=lambda _settings: render_problem,
    on_feed=InAppChannel,
)
