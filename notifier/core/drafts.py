"""Building one ledger row: who it goes to, rendered and checked for its channel, or
why it is not sent. Pure: the renderer is handed in, nothing here does I/O."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from notifier.contracts.events import Channel, OrderEvent
from notifier.core.intents import WEBHOOK, context_digest, recipient_for, webhook_body
from notifier.core.lifecycle import Transition
from notifier.core.model import NotificationStatus, OrderAggregate
from notifier.core.plan import NewNotification, notification_id
from notifier.core.rules import Priority
from notifier.errors import TemplateError


class Rendered(Protocol):
    """What the pipeline needs of a rendered message."""

    @property
    def version(self) -> str: ...
    @property
    def locale(self) -> str: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def text(self) -> str: ...
    @property
    def html(self) -> str | None: ...


#: (subject or title, text) → what makes it unsendable, or ``None``
Check = Callable[[str | None, str], str | None]


class Renderer(Protocol):
    """Renders a template for a channel and locale (``notifier.rendering``)."""

    def render(
        self, template: str, channel: str, locale: str | None, context: Mapping[str, Any]
    ) -> Rendered:
        """Render or raise ``TemplateError``."""
        ...


@dataclass(frozen=True, slots=True)
class Drafting:
    """What drafting needs: the renderer, the channels that are on, per-channel checks."""

    renderer: Renderer
    enabled_channels: frozenset[str]
    checks: Mapping[str, Check]


def materialize(
    d: Drafting,
    order: OrderAggregate,
    *,
    event: OrderEvent,
    key: str,
    template: str,
    channel: str,
    priority: Priority,
    context: Callable[[], dict[str, Any]],
    state: str,
) -> NewNotification:
    """The ledger row for one notification. A suppressed one is neither rendered nor
    hashed (its digest stays empty): it was never told, so no revision corrects it."""
    draft = NewNotification(
        id=notification_id(key),
        idempotency_key=key,
        event_id=event.event_id,
        order_id=order.order_id,
        customer_id=event.customer.id,
        channel=channel,
        template=template,
        template_version=None,
        locale=None,
        recipient=None,
        subject=None,
        body_text=None,
        body_html=None,
        status=NotificationStatus.SUPPRESSED,
        priority=int(priority),
        event_seq=order.events[event.event_id].revised_seq,
        digest="",
        state=state,
        last_error=None,
    )
    recipient, why_not = recipient_for(event, Channel(channel))
    if recipient is None:
        draft.last_error = why_not
        return draft
    if channel not in d.enabled_channels:
        draft.last_error = f"channel {channel} is not enabled"
        return draft
    values = context()
    # the address is part of what is told: a revision that fixes it is a change
    draft.digest = context_digest({"context": values, "to": recipient})
    try:
        rendered = d.renderer.render(template, channel, event.customer.locale, values)
    except TemplateError as exc:
        draft.status = NotificationStatus.FAILED
        draft.last_error = f"template error: {exc}"
        return draft
    check = d.checks.get(channel)
    problem = check(rendered.subject, rendered.text) if check else None
    if problem is not None:
        draft.status = NotificationStatus.FAILED
        draft.last_error = f"template output not sendable on {channel}: {problem}"
        return draft
    draft.recipient = recipient
    draft.template_version = rendered.version
    draft.locale = rendered.locale
    draft.subject = rendered.subject
    draft.body_text = rendered.text
    draft.body_html = rendered.html
    draft.status = NotificationStatus.QUEUED
    return draft


def webhook_draft(
    d: Drafting, order: OrderAggregate, event: OrderEvent, key: str, transition: Transition, *,
    endpoint: str, correction: dict[str, Any] | None,
) -> NewNotification:
    """A partner delivery: a JSON body instead of a template, the endpoint's name as
    its recipient. Its digest covers the body, so a revision is a correction too."""
    nid = notification_id(key)
    body = webhook_body(event, transition, nid, endpoint, correction)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    enabled = WEBHOOK in d.enabled_channels
    return NewNotification(
        id=nid, idempotency_key=key, event_id=event.event_id, order_id=order.order_id,
        customer_id=event.customer.id, channel=WEBHOOK, template=WEBHOOK,
        template_version=None, locale=None, recipient=endpoint if enabled else None,
        subject=None, body_text=text if enabled else None, body_html=None,
        status=NotificationStatus.QUEUED if enabled else NotificationStatus.SUPPRESSED,
        priority=int(Priority.NORMAL),
        event_seq=order.events[event.event_id].revised_seq,
        digest=context_digest({"webhook": body}) if enabled else "",
        state=transition.to_state.value,
        last_error=None if enabled else "channel webhook is not enabled",
    )
