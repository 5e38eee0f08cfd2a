"""Reconcile: what the customer was told against what the order's new history calls for.

After dedupe has changed an order's history, each notification the rules wanted
before (``old``) and want now (``new``) is compared with the ledger row it has:

    wanted now, no row yet                      a new row
    wanted now, row unsent, content changed     the row takes the new content (revised)
    wanted now, row told, content changed       a correction, numbered, on its channel
    no longer wanted, row unsent                withdrawn (suppressed), fallbacks too
    no longer wanted, row told                  a correction saying so (retracted or not)

What the customer has been told is kept per row (``digest``), so a change back and
forth is corrected each time it happens and an unchanged intent sends nothing. Pure,
like every stage in ``notifier.core``: the result is rows and updates in the plan.
"""

from __future__ import annotations

from notifier.contracts.events import OrderEvent
from notifier.core.corrections import correction_context
from notifier.core.dedupe import replay_order
from notifier.core.drafts import (
    DraftContext,
    Drafting,
    draft_intent,
    materialize,
    webhook_draft,
)
from notifier.core.intents import WEBHOOK, Intent, template_context
from notifier.core.lifecycle import OrderView, Transition, shipment_key
from notifier.core.model import NotificationStatus, OrderAggregate, StoredNotification
from notifier.core.notification_status import GOT_THROUGH, TOLD, UNSENT, Move, sources
from notifier.core.plan import WITHDRAWN, BatchPlan, LedgerUpdate
from notifier.core.rules import Priority


def reconcile_order(
    d: Drafting,
    order: OrderAggregate,
    old: dict[str, Intent],
    new: dict[str, Intent],
    touched: set[str],
    *,
    plan: BatchPlan,
) -> None:
    """Reconcile every intent of ``order`` that the batch may have changed.

    An intent wanted before and now, for an event the batch did not touch, is left as
    it is: nothing in the history it depends on changed.
    """
    for key in [*new, *(k for k in old if k not in new)]:
        intent = new.get(key) or old[key]
        if key in old and key in new and intent.event_id not in touched:
            continue
        _reconcile(d, order, key, old.get(key), new.get(key), plan=plan)


def _reconcile(
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
            _correct(d, order, existing, new, retracted=False, plan=plan)
            _retell(existing, draft.digest, plan)
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
        _correct(d, order, existing, None, retracted=retracted, plan=plan)
        _retell(existing, WITHDRAWN, plan)


def _retell(told: StoredNotification, now_known: str, plan: BatchPlan) -> None:
    # The next revision is compared with what the customer was told last (through
    # the correction), not with the first message: changing back is news too.
    told.digest = now_known
    plan.retold[told.id] = now_known


def _correct(
    d: Drafting,
    order: OrderAggregate,
    told: StoredNotification,
    now: Intent | None,
    *,
    retracted: bool,
    plan: BatchPlan,
) -> None:
    stored = order.events[told.event_id]
    # told with the customer's stored contacts and language; compared as published
    published = stored.parsed()
    event = d.personal(published)
    view = replay_order(order).view
    store = d.stores.view(event)
    if now is not None:
        context = template_context(event, now.transition, d.links(event), store=store)
    else:
        context = template_context(event, _no_transition(event, view), d.links(event), store=store)
    context["correction"] = correction_context(
        told,
        stored.before or published,
        published,
        current_state=view.derived_state,
        current_template=now.template if now else None,
        retracted=retracted,
    )
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


def _no_transition(event: OrderEvent, view: OrderView) -> Transition:
    shipment_id = shipment_key(event.state, event.shipment.id if event.shipment else None)
    return Transition(event.event_id, shipment_id, None, event.state, view.derived_state)
