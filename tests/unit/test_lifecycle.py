"""The transition tables and the replay, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifier.contracts.events import OrderState as S
from notifier.core.lifecycle import HistoryEntry, Outcome, replay

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def history(*steps: tuple[S, int] | tuple[S, int, str | None]) -> list[HistoryEntry]:
    """(state, minutes after T0[, shipment]) in publish order."""
    out = []
    for seq, step in enumerate(steps, start=1):
        state, minutes = step[0], step[1]
        shipment = (
            step[2]
            if len(step) > 2
            else (
                "p1"
                if state
                in {
                    S.SHIPPED,
                    S.IN_TRANSIT,
                    S.OUT_FOR_DELIVERY,
                    S.DELIVERED,
                    S.DELIVERY_FAILED,
                    S.RETURNED,
                }
                else None
            )
        )
        out.append(HistoryEntry(f"e{seq}", seq, T0 + timedelta(minutes=minutes), state, shipment))
    return out


LEGAL = [
    [
        (S.PLACED, 0),
        (S.CONFIRMED, 1),
        (S.PROCESSING, 2),
        (S.SHIPPED, 3),
        (S.IN_TRANSIT, 4),
        (S.OUT_FOR_DELIVERY, 5),
        (S.DELIVERED, 6),
    ],
    [(S.PLACED, 0), (S.DELIVERED, 1)],
    [(S.PLACED, 0), (S.ON_HOLD, 1), (S.PROCESSING, 2), (S.CANCELLED, 3), (S.REFUNDED, 4)],
    [
        (S.SHIPPED, 0),
        (S.DELIVERY_FAILED, 1),
        (S.OUT_FOR_DELIVERY, 2),
        (S.DELIVERED, 3),
        (S.RETURNED, 4),
        (S.REFUNDED, 5),
    ],
    [(S.PLACED, 0), (S.SHIPPED, 1), (S.CANCELLED, 2)],
]


@pytest.mark.parametrize("steps", LEGAL, ids=lambda s: "→".join(x[0].value for x in s))
def test_legal_paths_apply_every_step(steps: list[tuple[S, int]]) -> None:
    view = replay(history(*steps))
    assert set(view.outcomes.values()) == {Outcome.APPLIED}
    assert len(view.transitions) == len(steps)


ILLEGAL = [
    ([(S.PLACED, 0), (S.DELIVERED, 1), (S.PROCESSING, 2)], "processing after the order shipped"),
    ([(S.PLACED, 0), (S.CANCELLED, 1), (S.CONFIRMED, 2)], "cancelled → confirmed"),
    ([(S.PLACED, 0), (S.CANCELLED, 1), (S.SHIPPED, 2)], "after the order was cancelled"),
    ([(S.PLACED, 0), (S.REFUNDED, 1), (S.CANCELLED, 2)], "refunded → cancelled"),
    ([(S.SHIPPED, 0), (S.DELIVERED, 1), (S.IN_TRANSIT, 2)], "delivered → in_transit"),
    ([(S.SHIPPED, 0), (S.DELIVERED, 1), (S.CANCELLED, 2)], "cannot cancel"),
    ([(S.SHIPPED, 0), (S.OUT_FOR_DELIVERY, 1), (S.SHIPPED, 2)], "out_for_delivery → shipped"),
]


@pytest.mark.parametrize(("steps", "reason"), ILLEGAL, ids=[r for _, r in ILLEGAL])
def test_illegal_last_step(steps: list[tuple[S, int]], reason: str) -> None:
    view = replay(history(*steps))
    last = f"e{len(steps)}"
    assert view.outcomes[last] is Outcome.ILLEGAL
    assert reason in view.reasons[last]
    assert all(view.outcomes[f"e{i}"] is Outcome.APPLIED for i in range(1, len(steps)))


def test_stale_event_is_recorded_but_never_moves_state_back() -> None:
    view = replay(history((S.PLACED, 0), (S.SHIPPED, 10), (S.CONFIRMED, 5)))
    assert view.outcomes["e3"] is Outcome.STALE
    assert view.derived_state == "shipped"
    assert [t.to_state for t in view.transitions] == [S.PLACED, S.SHIPPED]


def test_stale_shipment_scan_after_delivery() -> None:
    view = replay(history((S.SHIPPED, 0), (S.DELIVERED, 10), (S.OUT_FOR_DELIVERY, 5)))
    assert view.outcomes["e3"] is Outcome.STALE
    assert view.shipments == {"p1": S.DELIVERED}


def test_repeated_state_changes_nothing() -> None:
    view = replay(history((S.SHIPPED, 0), (S.IN_TRANSIT, 1), (S.IN_TRANSIT, 2)))
    assert view.outcomes["e3"] is Outcome.REPEATED
    assert len(view.transitions) == 2


def test_replay_is_in_stream_order_whatever_the_arrival_order() -> None:
    entries = history((S.PLACED, 0), (S.CONFIRMED, 1), (S.SHIPPED, 2), (S.DELIVERED, 3))
    forward = replay(entries)
    backward = replay(reversed(entries))
    assert forward.transitions == backward.transitions
    assert forward.outcomes == backward.outcomes


def test_order_is_delivered_only_when_every_shipment_is() -> None:
    steps = history((S.PLACED, 0), (S.SHIPPED, 1, "a"), (S.SHIPPED, 2, "b"), (S.DELIVERED, 3, "a"))
    view = replay(steps)
    assert view.derived_state == "partially_delivered"
    assert view.transitions[-1].order_state_after == "partially_delivered"
    view = replay([*steps, HistoryEntry("e5", 5, T0 + timedelta(minutes=4), S.DELIVERED, "b")])
    assert view.derived_state == "delivered"
    assert view.transitions[-1].order_state_after == "delivered"


def test_two_shipments_have_independent_staleness() -> None:
    view = replay(history((S.SHIPPED, 0, "a"), (S.DELIVERED, 10, "a"), (S.SHIPPED, 5, "b")))
    assert view.outcomes["e3"] is Outcome.APPLIED
    assert view.derived_state == "partially_delivered"
