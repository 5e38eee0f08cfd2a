"""The batch pipeline: dedupe → lifecycle → rules → render, as one pure plan.

``plan_batch`` takes the orders a batch touches (loaded and locked by the store) and
the batch's valid events, and returns everything the store must write in the same
transaction: history rows, order states, new ledger rows, ledger updates, and the
events to dead-letter. It does no I/O, so a crash anywhere before the commit leaves
nothing behind, and the redelivered batch plans the same thing again.

This module is the orchestration: each event goes through ``dedupe`` (what it is to
the order's history), then each order the batch changed is settled once (outcomes,
order state, the intents its rules derive) and handed to ``reconcile`` (what the
customer was told against what the new history calls for).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from notifier.clock import Clock, SystemClock
from notifier.contracts.channels import ChannelSpec, SenderPicker
from notifier.contracts.stores import StoreBook
from notifier.core.dedupe import CHANGES_HISTORY, dedupe, replay_order
from notifier.core.drafts import Check, Drafting, Renderer
from notifier.core.intents import Intent, WebhookRoutes, derive_intents
from notifier.core.lifecycle import OrderView, Replay
from notifier.core.links import LinkMaker, no_links
from notifier.core.model import (
    DeadLetter,
    DeadLetterReason,
    IncomingEvent,
    OrderAggregate,
    StoredTimer,
)
from notifier.core.optout_links import OptOutLinks
from notifier.core.plan import BatchPlan, OrderWrite
from notifier.core.preferences import PreferenceBook
from notifier.core.quiet_hours import QuietHours, QuietWindow
from notifier.core.reconcile import reconcile_order
from notifier.core.rules import RuleSet
from notifier.core.timer_plan import plan_due
from notifier.core.timers import timer_writes
from notifier.core.timing import time_rows
from notifier.core.transit import Forecast


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
    #: the links (order-status page) an event's messages carry
    links: LinkMaker = no_links
    #: the shops messages come from (``NOTIFIER_STORES_FILE``), and per channel who a
    #: store's message is sent as
    stores: StoreBook = field(default_factory=StoreBook)
    senders: Mapping[str, SenderPicker] = field(default_factory=dict)
    #: the unsubscribe and preferences links messages carry (None: not configured)
    optout_links: OptOutLinks | None = None
    #: where ``audience: ops`` rules send (``NOTIFIER_OPS_EMAIL``)
    ops_email: str | None = None
    #: the transit model ``predicted_late`` rules consult, replaced as it is relearned
    forecast: Forecast = field(default_factory=Forecast)
    #: which messages wait for the customer's morning (off unless configured)
    quiet: QuietHours = field(default_factory=QuietHours)
    #: what "now" is for quiet hours
    clock: Clock = field(default_factory=SystemClock)

    def drafting(self, preferences: PreferenceBook | None = None) -> Drafting:
        """A fresh drafting for one batch (it remembers template contexts), with the
        stored preferences of the batch's customers."""
        return Drafting(
            self.renderer,
            self.enabled_channels,
            self.checks,
            self.channels,
            self.links,
            stores=self.stores,
            senders=self.senders,
            preferences=preferences or {},
            optout_links=self.optout_links,
            ops_email=self.ops_email,
        )

    def quiet_for(self, preferences: PreferenceBook) -> QuietHours:
        """Quiet hours as the customers of a batch stored them (their own window and
        time zone), the service's default for everyone else."""
        if not preferences:
            return self.quiet

        def window(customer_id: str) -> QuietWindow | None:
            own = preferences.get(customer_id)
            hours = own.quiet_hours if own is not None else None
            return QuietWindow.parse(f"{hours.start}-{hours.end}") if hours else None

        def zone(customer_id: str) -> str | None:
            own = preferences.get(customer_id)
            return own.timezone if own is not None else None

        return replace(self.quiet, override=window, zones=zone)

    def plan_timers(
        self,
        orders: Mapping[str, OrderAggregate],
        due: Sequence[StoredTimer],
        now: datetime,
        preferences: PreferenceBook | None = None,
    ) -> BatchPlan:
        """Plan what claimed, due timers call for (``core.timer_plan``); what they send
        is held by quiet hours as a transition's messages are."""
        plan = plan_due(
            self.drafting(preferences), self.rules, orders, due, now, forecast=self.forecast
        )
        quiet = self.quiet_for(preferences or {})
        for order_id in {n.order_id for n in plan.notifications}:
            order = orders[order_id]
            rows = [n for n in plan.notifications if n.order_id == order_id]
            view = replay_order(order).view
            time_rows(rows, order, view, quiet=quiet, channels=self.channels, now=now)
        return plan

    def plan_batch(
        self,
        orders: dict[str, OrderAggregate],
        incoming: Iterable[IncomingEvent],
        owners: dict[str, str],
        preferences: PreferenceBook | None = None,
    ) -> BatchPlan:
        """Plan one batch; ``owners`` maps already-stored event ids to their order,
        ``preferences`` the batch's customers to what they stored."""
        plan = BatchPlan()
        drafting = self.drafting(preferences)
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
                runs[event.order_id] = run = replay_order(order)
                before[event.order_id] = derive_intents(
                    run.view,
                    self.rules,
                    event.order_id,
                    source=_source(order) or event.source,
                    webhooks=self.webhooks,
                    order=order,
                )
            what = dedupe(order, item, plan, runs)
            if event.event_id in order.events:
                owners[event.event_id] = event.order_id
            plan.count(what)
            if what in CHANGES_HISTORY:
                touched.setdefault(event.order_id, set()).add(event.event_id)
        for order_id, event_ids in touched.items():
            run = runs.get(order_id) or replay_order(orders[order_id])
            self._settle(
                drafting, orders[order_id], before[order_id], run.view, event_ids, plan=plan
            )
        return plan

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
        """Write down what the batch left of one order (event outcomes, the order's state),
        then reconcile what its rules wanted before the batch with what they want now."""
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
            view,
            self.rules,
            order.order_id,
            source=latest_event.source,
            webhooks=self.webhooks,
            order=order,
        )
        planned, revised = len(plan.notifications), len(plan.updates)
        reconcile_order(d, order, old, new, touched, plan=plan)
        plan.timers.extend(timer_writes(order, view, self.rules, self.forecast))
        rows = [
            *plan.notifications[planned:],
            *(u.replacement for u in plan.updates[revised:] if u.replacement is not None),
        ]
        if rows:
            # judged against where the whole batch left the order: stale rows are
            # suppressed, quiet-hours ones held (timing.py)
            quiet = self.quiet_for(d.preferences)
            time_rows(rows, order, view, quiet=quiet, channels=self.channels, now=self.clock.now())
        for stored in order.events.values():
            stored.before = None  # told now: the next batch compares with this version


def _source(order: OrderAggregate) -> str:
    """The platform an order comes from, as its latest stored event says."""
    latest = max(order.events.values(), key=lambda e: e.seq, default=None)
    return latest.parsed().source if latest is not None else ""
