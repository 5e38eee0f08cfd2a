"""The timer poller: one asyncio task that fires the time rules' due timers.

Every ``NOTIFIER_TIMER_POLL_S`` it claims due timers (``store.timers``), then, in one
transaction per claim, locks their orders as an ingest batch would, asks each rule
again against the order's current history (``Pipeline.plan_timers``) and writes the
notifications (ledger rows and outbox) with the timers marked fired. Timers are rows
in the database, so a restart loses none: those that came due while the service was
down are claimed at the first poll, checked, and fire once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.clock import Clock, SystemClock
from notifier.core.pipeline import Pipeline
from notifier.core.plan import BatchPlan
from notifier.metrics import Metrics
from notifier.store.batches import load_orders, lock_orders, write_plan
from notifier.store.preferences import load_preferences
from notifier.store.timers import claim_due

log = logging.getLogger(__name__)

#: how long a claim keeps other replicas off a timer (a poller that died lets go)
CLAIM_LEASE = timedelta(seconds=30)
#: timers one poll takes on (the next poll takes the rest at once)
CLAIM_LIMIT = 200


@dataclass
class TimerPoller:
    """Claims and fires due timers until stopped."""

    engine: AsyncEngine
    #: the pipeline in effect now (the rules API swaps it between batches)
    pipeline: Callable[[], Pipeline]
    metrics: Metrics
    interval_s: float = 1.0
    clock: Clock = field(default_factory=SystemClock)
    on_committed: Callable[[], None] = lambda: None
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling (rules with timers may come through the rules API at any time;
        a poll with nothing due is one indexed query)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="timers")

    async def stop(self) -> None:
        """Stop; a poll in hand is cancelled and its claims lapse (nothing was written)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def poll(self) -> BatchPlan:
        """One round: claim what is due now and fire (or re-check) it, in one transaction."""
        now = self.clock.now()
        claimed = await claim_due(self.engine, now, limit=CLAIM_LIMIT, lease=CLAIM_LEASE)
        if not claimed:
            return BatchPlan()
        order_ids = sorted({t.order_id for t in claimed})
        async with self.engine.begin() as conn:
            await lock_orders(conn, order_ids)
            orders, _ = await load_orders(conn, order_ids, [], with_timers=True)
            # what fires is told as the customer asked (channels, contacts, muted orders)
            customers = {e.customer_id for o in orders.values() for e in o.events.values()}
            preferences = await load_preferences(conn, customers)
            plan = self.pipeline().plan_timers(orders, claimed, now, preferences)
            await write_plan(conn, plan)
        for note in plan.notifications:
            self.metrics.count(note.channel, note.template, note.status.value)
        if plan.counts:
            log.info("timers: %s", ", ".join(f"{k} {v}" for k, v in sorted(plan.counts.items())))
        self.on_committed()
        return plan

    async def _run(self) -> None:
        while True:
            try:
                plan = await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer poll failed; will try again")
                plan = BatchPlan()
            if len(plan.timers) < CLAIM_LIMIT:
                await asyncio.sleep(self.interval_s)
