"""Dedupe: what one incoming event is to the history its order already holds.

Events arrive one at a time, in stream order, and each is recognised as one of:

    new          an event id not seen before: stored, stepped onto the history
    duplicate    the same content again, or a version older than the one held
    revision     new content for a known event id: the history is replayed whole
    retraction   a known event withdrawn by its source (or an unknown one, kept)
    moved        a copy of a known event from before the place recorded for it
    illegal      the lifecycle refuses it: dead-lettered, the history left as it was

The order's stored events change in place. What the customer must now be told about
the new history is ``reconcile``'s question, asked once per order after the batch;
this module only decides what the history is. Pure, like every stage in
``notifier.core``: a crash before the commit leaves nothing, and the redelivered batch
is recognised the same way again.
"""

from __future__ import annotations

from typing import Any, Literal

from notifier.core.lifecycle import Outcome, Replay, replay_run
from notifier.core.model import (
    DeadLetter,
    DeadLetterReason,
    IncomingEvent,
    OrderAggregate,
    StoredEvent,
)
from notifier.core.plan import BatchPlan

#: what an incoming event turned out to be (also the name it is counted under)
Verdict = Literal["new", "duplicate", "revision", "retraction", "moved", "illegal"]
#: the verdicts that change an order's history, so its notifications are reconciled
CHANGES_HISTORY: frozenset[Verdict] = frozenset({"new", "revision", "retraction", "moved"})


def replay_order(order: OrderAggregate) -> Replay:
    """The order's history as dedupe left it (retracted events out), replayed."""
    return replay_run(e.entry() for e in order.events.values() if not e.retracted)


def dedupe(
    order: OrderAggregate, item: IncomingEvent, plan: BatchPlan, runs: dict[str, Replay]
) -> Verdict:
    """Recognise ``item`` against ``order``'s stored events and update them.

    ``runs`` holds, per order, the replay of its history so far in the batch: a new
    event after everything known is stepped onto it (the common case, and cheap); any
    other change replays the order whole. An illegal event is added to the plan's dead
    letters and leaves the stored events as they were.
    """
    event = item.event
    stored = order.events.get(event.event_id)
    run = runs.pop(order.order_id, None)
    if stored is not None:
        if stored.content_hash == item.content_hash or item.message.seq < stored.revised_seq:
            # nothing newer in it: the same content again, or a version older than
            # the one held (the one published later wins)
            if item.message.seq < stored.seq:
                return _move_earlier(order, stored, item, plan, runs)
            if run is not None:
                runs[order.order_id] = run
            return "duplicate"
        snapshot = _snapshot(stored)
        stored.revise(item)
        what: Verdict = "retraction" if event.retracted else "revision"
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
        run = replay_order(order)
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


def _move_earlier(
    order: OrderAggregate,
    stored: StoredEvent,
    item: IncomingEvent,
    plan: BatchPlan,
    runs: dict[str, Replay],
) -> Verdict:
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
    moved = replay_order(order)
    outcome = moved.view.outcomes.get(stored.event_id)
    if outcome is Outcome.ILLEGAL:
        _restore(stored, snapshot)  # the next event of the order replays it afresh
        return "duplicate"
    if outcome is Outcome.STALE:
        plan.count("stale")
    runs[order.order_id] = moved
    return "moved"


def _snapshot(stored: StoredEvent) -> dict[str, Any]:
    return {name: getattr(stored, name) for name in StoredEvent.__slots__}


def _restore(stored: StoredEvent, snapshot: dict[str, Any]) -> None:
    for name, value in snapshot.items():
        setattr(stored, name, value)
