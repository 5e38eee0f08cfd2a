"""Building one ledger row: who it goes to, rendered and checked for its channel, or
why it is not sent. Pure: the renderer is handed in, nothing here does I/O."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from notifier.contracts.channels import ChannelSpec, RenderCheck, SenderPicker
from notifier.contracts.events import OrderEvent
from notifier.contracts.stores import StoreBook
from notifier.core.intents import (
    WEBHOOK,
    Intent,
    context_digest,
    recipient_for,
    template_context,
    told_part,
    webhook_body,
)
from notifier.core.lifecycle import Transition
from notifier.core.links import LinkMaker, no_links
from notifier.core.model import NotificationStatus, OrderAggregate, canonical_json, digest
from notifier.core.optout_links import OptOutLinks
from notifier.core.plan import NewNotification, notification_id
from notifier.core.preferences import PreferenceBook, personalised, refusal
from notifier.core.rules import Priority
from notifier.errors import TemplateError
from notifier.redaction import redact


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
Check = RenderCheck


class Renderer(Protocol):
    """Renders a template for a channel and locale (``notifier.rendering``)."""

    def render(
        self, template: str, channel: str, locale: str | None, context: Mapping[str, Any]
    ) -> Rendered:
        """Render or raise ``TemplateError``."""
        ...


class DraftContext:
    """A template context, built on first use, and its canonical JSON, worked out once
    however many channels of a transition render it."""

    __slots__ = ("_canonical", "_make", "_values", "sendable")

    def __init__(self, make: Callable[[], dict[str, Any]]) -> None:
        self._make = make
        self._values: dict[str, Any] | None = None
        self._canonical: str | None = None
        #: (template, channel) → whether it rendered and can be sent, once drafted
        self.sendable: dict[tuple[str, str], bool] = {}

    @property
    def values(self) -> dict[str, Any]:
        """What the templates see."""
        if self._values is None:
            self._values = self._make()
        return self._values

    def digest_to(self, recipient: str) -> str:
        """``context_digest({"context": told, "to": recipient})``, without encoding the
        context again for every recipient: canonical JSON sorts the two keys so.

        ``told`` is what the customer is told of the context (``told_part``: links and
        store left out)."""
        if self._canonical is None:
            self._canonical = canonical_json(told_part(self.values))
        return digest(f'{{"context":{self._canonical},"to":{canonical_json(recipient)}}}')


@dataclass(frozen=True, slots=True)
class Drafting:
    """What drafting needs: the renderer, the channels that are on, per-channel checks,
    what each registered channel is (how it picks the customer's address), and the
    links an event's messages carry.

    One is made per batch: it remembers each (event, transition)'s template context
    for the rest of the batch.
    """

    renderer: Renderer
    enabled_channels: frozenset[str]
    checks: Mapping[str, Check]
    channels: Mapping[str, ChannelSpec]
    links: LinkMaker = no_links
    #: the shops messages come from, and per channel who a store's message is sent as
    stores: StoreBook = field(default_factory=StoreBook)
    senders: Mapping[str, SenderPicker] = field(default_factory=dict)
    #: the stored preferences of the batch's customers, and the links by which they
    #: change them (None: no public base URL or secret, so no such links)
    preferences: PreferenceBook = field(default_factory=dict)
    optout_links: OptOutLinks | None = None
    #: id of an event → (the event, kept alive, and the event as its customer's
    #: preferences change it), so its contexts are cached under one identity
    _personal: dict[int, tuple[OrderEvent, OrderEvent]] = field(default_factory=dict)
    #: where rules with ``audience: ops`` send (``NOTIFIER_OPS_EMAIL``)
    ops_email: str | None = None
    #: (id of the event, transition) → (the event, kept alive so the id stays its own,
    #: its context)
    _contexts: dict[tuple[int, Transition], tuple[OrderEvent, DraftContext]] = field(
        default_factory=dict
    )

    def context(
        self, event: OrderEvent, transition: Transition, make: Callable[[], dict[str, Any]]
    ) -> DraftContext:
        """The context of ``event`` and ``transition``, made with ``make`` the first time."""
        key = (id(event), transition)
        found = self._contexts.get(key)
        if found is None:
            found = self._contexts[key] = (event, DraftContext(make))
        return found[1]

    def personal(self, event: OrderEvent) -> OrderEvent:
        """``event`` with its customer's stored contacts, locale and time zone, the same
        object for the same event throughout the batch."""
        prefs = self.preferences.get(event.customer.id)
        if prefs is None:
            return event
        found = self._personal.get(id(event))
        if found is None:
            found = self._personal[id(event)] = (event, personalised(event, prefs))
        return found[1]


def materialize(
    d: Drafting,
    order: OrderAggregate,
    *,
    event: OrderEvent,
    key: str,
    template: str,
    channel: str,
    priority: Priority,
    context: DraftContext,
    state: str,
    category: str = "transactional",
    to_ops: bool = False,
) -> NewNotification:
    """The ledger row for one notification. A suppressed one is neither rendered nor
    hashed (its digest stays empty): it was never told, so no revision corrects it.

    ``event`` is as :meth:`Drafting.personal` gives it; a message its customer opted out
    of (the category on this channel, or a muted order) is suppressed saying so.
    ``to_ops``: it goes to the operations address, not to the customer, whose
    preferences do not apply to it."""
    # suppressed until it is shown to be sendable below
    draft = withheld(
        order, event, key, template=template, channel=channel, priority=priority, state=state
    )
    draft.category = category
    spec = d.channels.get(channel)
    if spec is None:  # a correction of a message on a channel no longer registered
        draft.last_error = f"channel {channel} is not registered"
        return draft
    if to_ops:
        recipient, why_not = d.ops_email, "NOTIFIER_OPS_EMAIL is not set"
    else:
        prefs = d.preferences.get(event.customer.id)
        unwanted = refusal(prefs, order.order_id, channel, category)
        if unwanted is not None:
            draft.last_error = unwanted
            return draft
        chosen = prefs is not None and prefs.channels.of(category) is not None
        recipient, why_not = recipient_for(event, spec, chosen=chosen)
    if recipient is None:
        draft.last_error = why_not
        return draft
    if channel not in d.enabled_channels:
        draft.last_error = f"channel {channel} is not enabled"
        return draft
    # the address is part of what is told: a revision that fixes it is a change
    draft.digest = context.digest_to(recipient)
    values = context.values
    if d.optout_links is not None:
        # per category and channel, unlike the rest of the context; links are not
        # part of what is told (``UNTOLD_KEYS``), so the digest above is unchanged
        optout = d.optout_links(event.customer.id, channel, category, event.occurred_at)
        values = {**values, "links": {**values["links"], **optout}}
        draft.unsubscribe_url = optout.get("unsubscribe")
    try:
        rendered = d.renderer.render(template, channel, event.customer.locale, values)
    except TemplateError as exc:
        draft.status = NotificationStatus.FAILED
        # a template error can quote what it was given: a name, an address
        draft.last_error = redact(f"template error: {exc}", [recipient, event.customer.name])
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
    pick = d.senders.get(channel)
    store = d.stores.for_event(event) if pick is not None else None
    if pick is not None and store is not None:
        # decided with the rendering (its header and footer name the same store)
        origin = pick(store)
        draft.sender, draft.reply_to = origin.sender, origin.reply_to
    return draft


def webhook_draft(
    d: Drafting,
    order: OrderAggregate,
    event: OrderEvent,
    key: str,
    transition: Transition,
    *,
    endpoint: str,
    correction: dict[str, Any] | None,
) -> NewNotification:
    """A partner delivery: a JSON body instead of a template, the endpoint's name as
    its recipient. Its digest covers the body, so a revision is a correction too."""
    nid = notification_id(key)
    body = webhook_body(event, transition, nid, endpoint, correction)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    enabled = WEBHOOK in d.enabled_channels
    return NewNotification(
        id=nid,
        idempotency_key=key,
        event_id=event.event_id,
        order_id=order.order_id,
        customer_id=event.customer.id,
        channel=WEBHOOK,
        template=WEBHOOK,
        template_version=None,
        locale=None,
        recipient=endpoint if enabled else None,
        subject=None,
        body_text=text if enabled else None,
        body_html=None,
        status=NotificationStatus.QUEUED if enabled else NotificationStatus.SUPPRESSED,
        priority=int(Priority.NORMAL),
        event_seq=order.events[event.event_id].revised_seq,
        digest=context_digest({"webhook": body}) if enabled else "",
        state=transition.to_state.value,
        last_error=None if enabled else "channel webhook is not enabled",
    )


def draft_intent(d: Drafting, order: OrderAggregate, intent: Intent, key: str) -> NewNotification:
    """The ledger row an intent calls for; a fallback channel waits on standby while an
    earlier channel of its rule will be tried."""
    event = d.personal(order.events[intent.event_id].parsed())
    if intent.endpoint is not None:
        return webhook_draft(
            d, order, event, key, intent.transition, endpoint=intent.endpoint, correction=None
        )
    context = _context(d, event, intent)
    draft = materialize(
        d,
        order,
        event=event,
        key=key,
        template=intent.template,
        channel=intent.channel,
        priority=intent.priority,
        context=context,
        state=intent.transition.to_state.value,
        category=intent.category,
        to_ops=intent.to_ops,
    )
    context.sendable[intent.template, intent.channel] = draft.status is NotificationStatus.QUEUED
    if intent.fallback_group is not None:
        draft.fallback_group = intent.fallback_group
        draft.fallback_rank = intent.fallback_rank
        earlier = intent.chain[: intent.fallback_rank or 0]
        if draft.status is NotificationStatus.QUEUED and any(
            _sendable(d, order, event, intent, c) for c in earlier
        ):
            # an earlier channel goes first; this one waits in case it fails
            draft.status = NotificationStatus.STANDBY
    return draft


def _sendable(
    d: Drafting, order: OrderAggregate, event: OrderEvent, intent: Intent, channel: str
) -> bool:
    """Whether an earlier channel of a fallback rule will be tried. One that cannot
    be (no contact, channel off, or it fails when rendered) never sends and never
    fails at send time, so nothing would ever hand over from it. The earlier
    channel's own draft, made just before in the batch, usually knows already."""
    context = _context(d, event, intent)
    known = context.sendable.get((intent.template, channel))
    if known is None:
        draft = materialize(
            d,
            order,
            event=event,
            key=intent.key,
            template=intent.template,
            channel=channel,
            priority=intent.priority,
            context=context,
            state=intent.transition.to_state.value,
            category=intent.category,
            to_ops=intent.to_ops,
        )
        known = draft.status is NotificationStatus.QUEUED
        context.sendable[intent.template, channel] = known
    return known


def _context(d: Drafting, event: OrderEvent, intent: Intent) -> DraftContext:
    return d.context(
        event,
        intent.transition,
        lambda: template_context(
            event, intent.transition, d.links(event), store=d.stores.view(event)
        ),
    )


def withheld(
    order: OrderAggregate,
    event: OrderEvent,
    key: str,
    *,
    template: str,
    channel: str,
    priority: Priority,
    state: str,
    reason: str | None = None,
) -> NewNotification:
    """A ledger row for a notification decided against (``suppressed``, with why): what
    a due timer leaves when the order moved on, so the order's page says so. Drafting
    starts every row from this and lifts it to queued once it is shown sendable."""
    return NewNotification(
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
        last_error=reason,
    )
