"""The ledger's status table, walked: reachability, terminal statuses, the sets derived
from it, and the drawings of it in the docstring and the README."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from notifier.core import notification_status as table
from notifier.core.notification_status import MOVES, Move, check, sources, targets
from notifier.core.notification_status import NotificationStatus as S
from notifier.errors import IllegalMove

README = Path(__file__).resolve().parents[2] / "README.md"


def reachable(start: S | None, *, without: frozenset[Move] = frozenset()) -> set[S]:
    """Every status a row in ``start`` can come to, by moves not in ``without``."""
    seen: set[S] = set()
    todo: deque[S | None] = deque([start])
    while todo:
        for to, moves in MOVES[todo.popleft()].items():
            if moves - without and to not in seen:
                seen.add(to)
                todo.append(to)
    return seen


def test_every_status_has_a_row_and_every_move_is_used() -> None:
    assert set(MOVES) == {None, *S}
    assert all(targets(m) for m in Move)


@pytest.mark.parametrize("start", [None, S.QUEUED], ids=["new", "queued"])
def test_every_status_is_reachable(start: S | None) -> None:
    assert reachable(start) == set(S)


@pytest.mark.parametrize("status", sorted(set(S) - table.TERMINAL))
def test_every_open_status_can_settle_on_its_own(status: S) -> None:
    # without a revision or an operator, a row that is not terminal can still end
    assert reachable(status, without=table.REOPENING) & table.TERMINAL


@pytest.mark.parametrize("status", sorted(table.TERMINAL))
def test_terminal_statuses_leave_only_by_a_reopening_move(status: S) -> None:
    leaving = {m for to, moves in MOVES[status].items() if to != status for m in moves}
    assert leaving <= table.REOPENING
    assert reachable(status, without=table.REOPENING) <= {status}


SETS = [
    ("PENDING", {S.QUEUED, S.SENDING}),
    ("IN_FLIGHT", {S.SENDING}),
    ("SETTLED", {S.SENT, S.DELIVERED, S.UNDELIVERED, S.FAILED, S.SUPPRESSED, S.STANDBY}),
    ("UNSETTLED", {S.QUEUED, S.SENDING, S.STANDBY}),
    ("UNSENT", {S.QUEUED, S.FAILED, S.SUPPRESSED, S.STANDBY}),
    ("TOLD", {S.SENDING, S.SENT, S.DELIVERED, S.UNDELIVERED}),
    ("GOT_THROUGH", {S.SENT, S.DELIVERED}),
    ("NOT_THROUGH", {S.UNDELIVERED, S.FAILED}),
    ("RECEIPTED", {S.DELIVERED, S.UNDELIVERED, S.FAILED}),
    ("REPLAYABLE", {S.FAILED}),
    ("TERMINAL", {S.DELIVERED, S.UNDELIVERED, S.FAILED, S.SUPPRESSED}),
]


@pytest.mark.parametrize(("name", "expected"), SETS, ids=[n for n, _ in SETS])
def test_derived_sets(name: str, expected: set[S]) -> None:
    assert getattr(table, name) == expected


def test_the_told_and_the_untold_split_every_status() -> None:
    assert set(S) == table.TOLD | table.UNSENT
    assert not table.TOLD & table.UNSENT


LEGAL = [
    (None, Move.PLAN, S.QUEUED),
    (None, Move.PLAN, S.STANDBY),
    (S.QUEUED, Move.CLAIM, S.SENDING),
    (S.SENDING, Move.RECLAIM, S.SENDING),
    (S.SENDING, Move.SEND, S.SENT),
    (S.SENDING, Move.RECEIPT_OK, S.DELIVERED),
    (S.SENT, Move.RECEIPT_FAILED, S.UNDELIVERED),
    (S.SENT, Move.RECEIPT_FAILED, S.FAILED),
    (S.SENDING, Move.RETRY, S.QUEUED),
    (S.SENDING, Move.RELEASE, S.QUEUED),
    (S.SENDING, Move.GIVE_UP, S.FAILED),
    (S.SENDING, Move.GIVE_UP, S.SUPPRESSED),
    (S.STANDBY, Move.FALL_BACK, S.QUEUED),
    (S.STANDBY, Move.STAND_DOWN, S.SUPPRESSED),
    (S.FAILED, Move.REPLAY, S.QUEUED),
    (S.SUPPRESSED, Move.REVISE, S.STANDBY),
    (S.QUEUED, Move.WITHDRAW, S.SUPPRESSED),
    (S.STANDBY, Move.ERASE, S.SUPPRESSED),
    (S.QUEUED, Move.SUPERSEDE, S.SUPPRESSED),
    (S.STANDBY, Move.SUPERSEDE, S.SUPPRESSED),
]


@pytest.mark.parametrize(("frm", "how", "to"), LEGAL, ids=str)
def test_legal_moves(frm: S | None, how: Move, to: S) -> None:
    check(how, frm, to)
    if frm is not None:
        assert frm in sources(how, to)


ILLEGAL = [
    (None, Move.PLAN, S.SENDING),  # a row is never written as already claimed
    (S.QUEUED, Move.REVISE, S.STANDBY),  # the channel keeps the message it was handed
    (S.QUEUED, Move.SEND, S.SENT),  # only a claimed row is sent
    (S.SENT, Move.SEND, S.SENT),
    (S.DELIVERED, Move.RECEIPT_FAILED, S.UNDELIVERED),  # never backwards
    (S.SENDING, Move.ERASE, S.SUPPRESSED),  # its sender gives it up instead
    (S.UNDELIVERED, Move.REPLAY, S.QUEUED),  # only failed rows have dead letters
    (S.SENT, Move.REVISE, S.QUEUED),  # told: corrected, not rewritten
    (S.SUPPRESSED, Move.FALL_BACK, S.QUEUED),
    (S.SENDING, Move.SUPERSEDE, S.SUPPRESSED),  # being sent: too late to call it stale
    (S.SENT, Move.SUPERSEDE, S.SUPPRESSED),  # already told: untouched
]


@pytest.mark.parametrize(("frm", "how", "to"), ILLEGAL, ids=str)
def test_illegal_moves_raise(frm: S | None, how: Move, to: S) -> None:
    with pytest.raises(IllegalMove):
        check(how, frm, to)


@pytest.mark.parametrize(
    ("how", "to"), [(Move.REPLAY, S.SENT), (Move.CLAIM, S.QUEUED), (Move.PLAN, S.QUEUED)]
)
def test_no_update_can_be_built_for_a_move_the_table_lacks(how: Move, to: S) -> None:
    # PLAN inserts rows: there is no status to leave from, so no update either
    with pytest.raises(IllegalMove):
        sources(how, to)


def drawn() -> str:
    """The table as the module docstring draws it: by status, then by move."""
    lines = [f"{'from':<12}{'move':<18}to"]
    for frm, exits in MOVES.items():
        name = "(new)" if frm is None else frm.value
        by_move = {
            m: table.ordered(to for to, ms in exits.items() if m in ms)
            for m in Move
            if any(m in ms for ms in exits.values())
        }
        if not by_move:
            lines.append(f"{name:<12}(none)")
        for i, (how, tos) in enumerate(by_move.items()):
            line = f"{name if i == 0 else '':<12}{how.value:<18}{', '.join(tos)}"
            lines.append(line.rstrip())
    return "\n".join("    " + line for line in lines)


def test_the_docstring_draws_the_table() -> None:
    assert drawn() in (table.__doc__ or "")


def test_the_readme_draws_the_table() -> None:
    rows = ["| from | move | to |", "|---|---|---|"]
    for frm, exits in MOVES.items():
        name = "(new)" if frm is None else f"`{frm.value}`"
        by_move = {
            m: table.ordered(to for to, ms in exits.items() if m in ms)
            for m in Move
            if any(m in ms for ms in exits.values())
        }
        if not by_move:
            rows.append(f"| {name} | | nothing |")
        for i, (how, tos) in enumerate(by_move.items()):
            to_text = ", ".join(f"`{t}`" for t in tos)
            rows.append(f"| {name if i == 0 else ''} | {how.value} | {to_text} |")
    assert "\n".join(rows) in README.read_text()
