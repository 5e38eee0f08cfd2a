"""An event's place in its order's history is where it was first published.

A crash can hold an event's first copy back (JetStream redelivers it after
``ack_wait``) while a copy its source re-sent, later in the stream, goes through
first. When the first copy comes, the event takes its first place again and the
order is replayed: the notifications that place calls for are sent, once.
"""

from __future__ import annotations

from notifier.core.model import NotificationStatus
from tests.unit.test_pipeline import Harness, ev, queued


def test_a_held_back_first_copy_brings_back_the_confirmation_a_later_copy_made_stale() -> None:
    h = Harness()
    placed, shipped = ev("o", "placed", 0), ev("o", "shipped", 5)
    first = h.apply(h.message(shipped, seq=2), h.message(placed, seq=3))
    assert first.counts == {"new": 2, "stale": 1}
    assert queued(first) == ["shipped"]

    held_back = h.apply(h.message(placed, seq=1))
    assert held_back.counts == {"moved": 1}
    assert queued(held_back) == ["order_confirmed"]
    assert held_back.updates == [] and held_back.dead_letters == []
    assert [(e.event_id, e.seq, e.outcome) for e in held_back.events] == [
        ("o-placed-0", 1, "applied")
    ]
    assert held_back.orders[0].derived_state == "shipped"

    for seq in (1, 3):  # redelivered again, or the re-sent copy again: nothing more
        again = h.apply(h.message(placed, seq=seq))
        assert again.counts == {"duplicate": 1}
        assert again.notifications == [] and again.updates == [] and again.events == []


def test_moving_to_the_first_place_sends_nothing_already_decided_again() -> None:
    for told in (False, True):
        h = Harness()
        placed = ev("o", "placed", 0)
        assert queued(h.apply(h.message(placed, seq=3))) == ["order_confirmed"]
        if told:
            h.mark("o", NotificationStatus.SENT)
        plan = h.apply(h.message(placed, seq=1))
        assert plan.counts == {"moved": 1}
        assert [e.seq for e in plan.events] == [1]
        assert plan.notifications == [] and plan.updates == [] and plan.retold == {}


def test_copies_in_one_batch_are_taken_in_stream_order_whatever_order_they_come_in() -> None:
    h = Harness()
    placed, shipped = ev("o", "placed", 0), ev("o", "shipped", 5)
    plan = h.apply(h.message(placed, seq=3), h.message(shipped, seq=2), h.message(placed, seq=1))
    assert plan.counts == {"new": 2, "duplicate": 1}
    assert queued(plan) == ["order_confirmed", "shipped"]
    assert sorted((e.event_id, e.seq) for e in plan.events) == [
        ("o-placed-0", 1),
        ("o-shipped-5", 2),
    ]


def test_an_older_version_from_an_earlier_place_moves_the_place_not_the_content() -> None:
    h = Harness()
    original = ev(
        "o", "placed", 0, customer={"id": "c1", "email": "ada@example.com", "name": "Ada Byron"}
    )
    revised = dict(original, customer={"id": "c1", "email": "ada@example.com", "name": "Eve Byron"})
    h.apply(h.message(ev("o", "shipped", 5), seq=2), h.message(revised, seq=3))
    plan = h.apply(h.message(original, seq=1))
    assert plan.counts == {"moved": 1}
    (stored,) = plan.events
    assert (stored.seq, stored.revised_seq, stored.parsed().customer.name) == (1, 3, "Eve Byron")
    (confirmation,) = [n for n in plan.notifications if n.status is NotificationStatus.QUEUED]
    assert confirmation.template == "order_confirmed"
    assert "Eve" in (confirmation.body_text or "") and "Ada" not in (confirmation.body_text or "")


def test_a_retracted_event_takes_its_first_place_and_stays_retracted() -> None:
    h = Harness()
    placed = ev("o", "placed", 0)
    h.apply(h.message(ev("o", "shipped", 5), seq=2), h.message(dict(placed, retracted=True), seq=3))
    plan = h.apply(h.message(placed, seq=1))
    assert plan.counts == {"moved": 1}
    (stored,) = plan.events
    assert (stored.seq, stored.retracted, stored.outcome) == (1, True, "retracted")
    assert plan.notifications == [] and plan.updates == []


def test_an_event_illegal_at_its_first_place_keeps_the_place_it_was_accepted_at() -> None:
    # In stream order `confirmed` at 2 is refused (processing → confirmed) and its
    # re-sent copy at 4 applied (on_hold → confirmed): the same end as this order.
    h = Harness()
    confirmed = ev("o", "confirmed", 4)
    h.apply(
        h.message(ev("o", "processing", 1), seq=1),
        h.message(ev("o", "on_hold", 3), seq=3),
        h.message(confirmed, seq=4),
    )
    plan = h.apply(h.message(confirmed, seq=2))
    assert plan.counts == {"duplicate": 1}
    assert plan.events == [] and plan.notifications == [] and plan.dead_letters == []
    assert h.orders["o"].events["o-confirmed-4"].seq == 4
