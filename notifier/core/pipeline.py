"""The batch pipeline: dedupe → lifecycle → rules → render, as one pure plan.

``plan_batch`` takes the orders a batch touches (loaded and locked by the store) and
the batch's valid events, and returns everything the store must write in the same
transaction: history rows, order states, new ledger rows, ledger updates, and the
events to dead-letter. It does no I/O, so a crash anywhere before the commit leaves
nothing behind, and the redelivered batch plans the same thing again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from notifier.contracts.channels import ChannelSpec
from notifier.contracts.events import OrderEvent
from notifier.core.drafts import (
    Check,
    DraftContext,
    Drafting,
    Renderer,
    draft_intent,
    materialize,
    webhook_draft,
)
from notifier.core.intents import (
    WEBHOOK,
    Intent,
    WebhookRoutes,
    derive_intents,
    template_context,
)
from notifier.core.lifecycle import (
    OrderView,
    Outcome,
    Replay,
    Transition,
    replay_run,
    shipment_key,
)
from notifier.core.model import (
    DeadLetter,
    DeadLetterReason,
    IncomingEvent,
    NotificationStatus,
    OrderAggregate,
    StoredEvent,
    StoredNotification,
)
from notifier.core.notification_status import GOT_THROUGH, TOLD, UNSENT, Move, sources
from notifier.core.plan import (
    WITHDRAWN,
    BatchPlan,
    LedgerUpdate,
    OrderWrite,
)
from notifier.core.rules import Priority, RuleSet


@dataclass(slots=True)
class Pipeline:
    """The pure stages, configured once by the composition root."""

    rules: RuleSet
    renderer: Renderer
    enabled_channels: frozenset[str]
    #: every registered channel, by name: how each picks the customer's address
    channels: Mapping[str, ChannelSpec]
    #: which partner webhook endpoints want a transition
    webhooks: WebhookRoutes = field(default=lambda _source, _state: ())
    #: per channel, what is wrong with a rendering (too long for a push, too many SMS
    #: segments), or ``None``: checked at render time, so it fails before any send
    checks: Mapping[str, Check] = field(default_factory=dict)

    def plan_batch(
        self,
        orders: dict[str, OrderAggregate],
        incoming: Iterable[IncomingEvent],
        owners: dict[str, str],
    ) -> BatchPlan:
        """Plan one batch; ``owners`` maps already-stored event ids to their order."""
        plan = BatchPlan()
        drafting = Drafting(self.renderer, self.enabled_channels, self.checks, self.channels)
        owners = dict(owners)
        before: dict[str, dict[str, Intent]] = {}
        runs: dict[str, Replay] = {}
        touched: dict[str, set[str]] = {}
        for item in sorted(incoming, key=lambda i: i.message.seq):
            event = item.event
            owner = owners.get(event.event_id)
            if owner is not None and owner != event.order_id:
                plan.dead_letters.append(
                    DeadLetter(
                        item.message,
                        DeadLetterReason.EVENT_ID_CONFLICT,
                        f"event_id already used by another order ({owner})",
                    )
                )
                continue
            order = orders[event.order_id]
            if event.order_id not in before:
                runs[event.order_id] = run = _run(order)
                before[event.order_id] = derive_intents(
                    run.view,
                    self.rules,
                    event.order_id,
                    source=_source(order) or event.source,
                    webhooks=self.webhooks,
                )
            what = self._dedupe(order, item, plan, runs)
            if event.event_id in order.events:
                owners[event.event_id] = event.order_id
            plan.count(what)
            if what in ("new", "revision", "retraction", "moved"):
                touched.setdefault(event.order_id, set()).add(event.event_id)
        for order_id, event_ids in touched.items():
            run = runs.get(order_id) or _run(orders[order_id])
            self._settle(
                drafting, orders[order_id], before[order_id], run.view, event_ids, plan=plan
            )
        return plan

    def _dedupe(
        self, order: OrderAggregate, item: IncomingEvent, plan: BatchPlan, runs: dict[str, Replay]
    ) -> str:
        event = item.event
        stored = order.events.get(event.event_id)
        run = runs.pop(order.order_id, None)
        if stored is not None:
            if stored.content_hash == item.content_hash or item.message.seq < stored.revised_seq:
                # nothing newer in it: the same content again, or a version older than
                # the one held (the one published later wins)
                if item.message.seq < stored.seq:
                    return self._move_earlier(order, stored, item, plan, runs)
                if run is not None:
                    runs[order.order_id] = run
                return "duplicate"
            snapshot = _snapshot(stored)
            stored.revise(item)
            what = "retraction" if event.retracted else "revision"
            run = None  # history changed in the middle: replay it whole
        else:
            stored = StoredEvent.from_incoming(item)
            order.events[event.event_id] = stored
            if event.retracted:
                if run is not None:
                    runs[order.order_id] = run
                return "retraction"
            snapshot = None
            what = "new"
        in_order = run is not None and all(
            e.seq < stored.seq for e in order.events.values() if e is not stored
        )
        if not in_order or run is None:
            run = _run(order)
            outcome = run.view.outcomes.get(event.event_id)
        else:
            # The common case: a new event after everything known; step it on.
            outcome = run.step(stored.entry())
        if outcome is Outcome.ILLEGAL:
            reason = run.view.reasons.get(event.event_id)
            run.forget(event.event_id)
            if snapshot is None:
                del order.events[event.event_id]
            else:
                _restore(stored, snapshot)
                run = None
            plan.dead_letters.append(
                DeadLetter(
                    item.message,
                    DeadLetterReason.ILLEGAL_TRANSITION,
                    reason or "illegal transition",
                )
            )
            if run is not None:
                runs[order.order_id] = run
            return "illegal"
        if outcome is Outcome.STALE:
            plan.count("stale")
        runs[order.order_id] = run
        return what

    @staticmethod
    def _move_earlier(
        order: OrderAggregate,
        stored: StoredEvent,
        item: IncomingEvent,
        plan: BatchPlan,
        runs: dict[str, Replay],
    ) -> str:
        """A copy of a known event from before the place recorded for it.

        The event was first published there: its first copy was held up (a crash, then
        ``ack_wait``) while a copy re-sent by its source went through. Recorded at the
        copy's place it may have been judged stale and its notifications withheld, so
        it takes the earlier place and the order is replayed; reconciling then sends
        what that place calls for, and nothing already told again. Only the place
        moves: the content stays the version published last. An event that would be
        illegal at its first place keeps the place it was accepted at, as it would have
        had its copies come in stream order (the first refused, the later one applied).
        """
        snapshot = _snapshot(stored)
        stored.seq = item.message.seq
        stored.dirty = True
        moved = _run(order)
        outcome = moved.view.outcomes.get(stored.event_id)
        if outcome is Outcome.ILLEGAL:
            _restore(stored, snapshot)  # the next event of the order replays it afresh
            return "duplicate"
        if outcome is Outcome.STALE:
            plan.count("stale")
        runs[order.order_id] = moved
        return "moved"

    def _settle(
        self,
        d: Drafting,
        order: OrderAggregate,
        old: dict[str, Intent],
        view: OrderView,
        touched: set[str],
        *,
        plan: BatchPlan,
    ) -> None:
        for event_id, outcome in view.outcomes.items():
            stored = order.events[event_id]
            if stored.outcome != outcome.value:
                stored.outcome = outcome.value
                stored.dirty = True
        for stored in order.events.values():
            if stored.retracted and stored.outcome != "retracted":
                stored.outcome = "retracted"
                stored.dirty = True
        plan.events.extend(e for e in order.events.values() if e.dirty)
        latest = max(
            (e for e in order.events.values() if not e.retracted),
            key=lambda e: e.seq,
            default=None,
        ) or max(order.events.values(), key=lambda e: e.seq)
        latest_event = latest.parsed()
        plan.orders.append(
            OrderWrite(
                order_id=order.order_id,
                source=latest_event.source,
                customer_id=latest_event.customer.id,
                derived_state=view.derived_state,
                order_state=view.order_state.value if view.order_state else None,
                shipments={k: v.value for k, v in view.shipments.items()},
                last_event_at=view.last_occurred_at,
                exists=order.exists,
            )
        )
        new = derive_intents(
            view, self.rules, order.order_id, source=latest_event.source, webhooks=self.webhooks
        )
        for key in [*new, *(k for k in old if k not in new)]:
            intent = new.get(key) or old[key]
            if key in old and key in new and intent.event_id not in touched:
                continue
            self._reconcile(d, order, key, old.get(key), new.get(key), plan=plan)

    def _reconcile(
        self,
        d: Drafting,
        order: OrderAggregate,
        key: str,
        old: Intent | None,
        new: Intent | None,
        *,
        plan: BatchPlan,
    ) -> None:
        existing = order.notifications.get(key)
        if new is not None:
            if new.once and existing is not None and existing.event_id != new.event_id:
                return  # already decided for another event of the order; it still holds
            draft = draft_intent(d, order, new, key)
            if existing is None:
                plan.notifications.append(draft)
                return
            if existing.digest == draft.digest:
                return
            if existing.status in UNSENT:
                # not told yet (waiting, withheld, or failed on what the revision fixes):
                # the row takes the revised content, and is tried afresh; a fallback
                # channel already handed the message keeps it
                if (
                    existing.status == NotificationStatus.QUEUED
                    and draft.status == NotificationStatus.STANDBY
                ):
                    draft.status = NotificationStatus.QUEUED
                if (
                    existing.status == NotificationStatus.SUPPRESSED
                    and draft.status == NotificationStatus.STANDBY
                    and _got_through(order, new)
                ):
                    return  # stood down: an earlier channel was told, and is corrected
                plan.updates.append(
                    LedgerUpdate(existing.id, draft, "revised before sending", existing.status)
                )
                existing.status = draft.status.value
                existing.digest = draft.digest
                return
            if existing.status in TOLD:
                self._correct(d, order, existing, new, retracted=False, plan=plan)
                self._retell(existing, draft.digest, plan)
            return
        if existing is None:
            return
        if existing.status in sources(Move.WITHDRAW, NotificationStatus.SUPPRESSED):
            # a fallback channel on standby is withdrawn too: else it waits for good, or
            # takes over the withdrawn message if the channel before it fails
            plan.updates.append(
                LedgerUpdate(existing.id, None, "withdrawn before sending", existing.status)
            )
            existing.status = NotificationStatus.SUPPRESSED.value
            existing.digest = ""
        elif existing.status in TOLD:
            retracted = old is not None and order.events[old.event_id].retracted
            self._correct(d, order, existing, None, retracted=retracted, plan=plan)
            self._retell(existing, WITHDRAWN, plan)

    @staticmethod
    def _retell(told: StoredNotification, now_known: str, plan: BatchPlan) -> None:
        # The next revision is compared with what the customer was told last (through
        # the correction), not with the first message: changing back is news too.
        told.digest = now_known
        plan.retold[told.id] = now_known

    def _correct(
        self,
        d: Drafting,
        order: OrderAggregate,
        told: StoredNotification,
        now: Intent | None,
        *,
        retracted: bool,
        plan: BatchPlan,
    ) -> None:
        event = order.events[told.event_id].parsed()
        view = _view(order)
        if now is not None:
            context = template_context(event, now.transition)
        else:
            context = template_context(event, _no_transition(event, view))
        context["correction"] = {
            "previous": {"template": told.template, "state": told.state},
            "current": {
                "template": now.template if now else None,
                "state": view.derived_state,
            },
            "retracted": retracted,
        }
        # numbered, so a change back and forth is corrected each time it happens
        prefix = f"{told.idempotency_key}:correction:"
        key = prefix + str(1 + sum(k.startswith(prefix) for k in order.notifications))
        if told.channel == WEBHOOK:
            transition = now.transition if now else _no_transition(event, view)
            endpoint = told.idempotency_key.rsplit(":", 1)[1]
            plan.notifications.append(
                webhook_draft(
                    d,
                    order,
                    event,
                    key,
                    transition,
                    endpoint=endpoint,
                    correction=context["correction"],
                )
            )
            return
        draft = materialize(
            d,
            order,
            event=event,
            key=key,
            template="correction",
            channel=told.channel,
            priority=Priority.HIGH,
            context=DraftContext(lambda: context),
            state=view.derived_state,
        )
        plan.notifications.append(draft)


def _got_through(order: OrderAggregate, intent: Intent) -> bool:
    """Whether an earlier channel of the intent's fallback rule reached the customer."""
    for channel in intent.chain[: intent.fallback_rank or 0]:
        found = order.notifications.get(f"{intent.fallback_group}:{channel}")
        if found is not None and found.status in GOT_THROUGH:
            return True
    return False


def _source(order: OrderAggregate) -> str:
    """The platform an order comes from, as its latest stored event says."""
    latest = max(order.events.values(), key=lambda e: e.seq, default=None)
    return latest.parsed().source if latest is not None else ""


def _run(order: OrderAggregate) -> Replay:
    return replay_run(e.entry() for e in order.events.values() if not e.retracted)


def _view(order: OrderAggregate) -> OrderView:
    return _run(order).view


def _snapshot(stored: StoredEvent) -> dict[str, Any]:
    return {name: getattr(stored, name) for name in StoredEvent.__slots__}


def _restore(stored: StoredEvent, snapshot: dict[str, Any]) -> None:
    for name, value in snapshot.items():
        setattr(stored, name, value)


def _no_transition(event: OrderEvent, view: OrderView) -> Transition:
    shipment_id = shipment_key(event.state, event.shipment.id if event.shipment else None)
    return Transition(event.event_id, shipment_id, None, event.state, view.derived_state)
