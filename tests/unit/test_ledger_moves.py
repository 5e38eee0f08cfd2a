"""Every conditional update of a status comes from the table: the SQL it builds, the
moves the code asks for, and no status spelled out anywhere else."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite

from notifier.core.notification_status import Move, sources
from notifier.core.notification_status import NotificationStatus as S
from notifier.errors import IllegalMove
from notifier.store.moves import move

PACKAGE = Path(__file__).resolve().parents[2] / "notifier"
STATUS_NAMES = {s.name for s in S}


def sql(statement: object) -> str:
    compiled = statement.compile(  # type: ignore[attr-defined]
        dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
    )
    return " ".join(str(compiled).split())


def wanted_sources(statement: object) -> set[str]:
    where = sql(statement).split(" WHERE ", 1)[1]
    return {s.value for s in S if f"notifications.status = '{s.value}'" in where}


@pytest.mark.parametrize(
    ("how", "to", "expected"),
    [
        (Move.ERASE, S.SUPPRESSED, {S.QUEUED, S.STANDBY}),
        (Move.FALL_BACK, S.QUEUED, {S.STANDBY}),
        (Move.REPLAY, S.QUEUED, {S.FAILED}),
        (Move.RECEIPT_FAILED, S.UNDELIVERED, {S.SENDING, S.SENT}),
        (Move.REVISE, S.STANDBY, {S.FAILED, S.SUPPRESSED, S.STANDBY}),
    ],
)
def test_an_update_leaves_only_from_the_moves_sources(how: Move, to: S, expected: set[S]) -> None:
    statement = move(how, to)
    assert wanted_sources(statement) == expected
    assert f"SET status='{to.value}'" in sql(statement)


def test_a_caller_may_narrow_the_sources_to_one_legal_status() -> None:
    assert wanted_sources(move(Move.REVISE, S.QUEUED, only_from=S.FAILED)) == {S.FAILED}


@pytest.mark.parametrize(
    ("how", "to", "only_from"),
    [
        (Move.REPLAY, S.SENT, None),
        (Move.STAND_DOWN, S.QUEUED, None),
        (Move.REVISE, S.STANDBY, S.QUEUED),  # a queued channel keeps its message
        (Move.WITHDRAW, S.SUPPRESSED, S.SENDING),  # a sender holds it: it is corrected later
    ],
)
def test_an_illegal_move_cannot_be_built(how: Move, to: S, only_from: S | None) -> None:
    with pytest.raises(IllegalMove):
        move(how, to, only_from=only_from)


def _python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _moves_named_in(tree: ast.AST) -> list[tuple[str, str]]:
    """Each ``Move.X`` written next to a status (``…status.Y``) in a call or a tuple."""
    found = []
    for node in ast.walk(tree):
        items = (
            node.args
            if isinstance(node, ast.Call)
            else (node.elts if isinstance(node, ast.Tuple) else [])
        )
        for a, b in itertools.pairwise(items):
            if (
                isinstance(a, ast.Attribute)
                and isinstance(a.value, ast.Name)
                and a.value.id == "Move"
                and isinstance(b, ast.Attribute)
                and b.attr in STATUS_NAMES
            ):
                found.append((a.attr, b.attr))
    return found


def test_every_move_the_code_names_is_in_the_table() -> None:
    named = {
        pair for path in _python_files() for pair in _moves_named_in(ast.parse(path.read_text()))
    }
    assert len(named) >= 10  # the scan finds the code's moves, so it can fail
    illegal = []
    for how, to in sorted(named):
        try:
            sources(Move[how], S[to])
        except IllegalMove:
            illegal.append(f"{how} → {to}")
    assert not illegal


#: where a status's word may be written out: the table, migrations (frozen history),
#: the order states (an order is ``delivered`` too), and Twilio's own words for its
#: receipts, in the receipt parser and the Twilio fake (server and wire format)
ALLOWED = {
    "core/notification_status.py",
    "contracts/events.py",
    "channels/twilio_receipts.py",
    "devtools/twiliofake.py",
    "devtools/twiliowire.py",
}
#: the same word meaning something else, one word per file
ALLOWED_WORDS = {
    ("bench/workload.py", "delivered"),  # an order state the workload publishes
    ("bench/latency.py", "sent"),  # sends per second, in the benchmark's timeline
    ("bench/plot.py", "sent"),  # the same, plotted
}


def _status_literals(path: Path, allowed: set[str] = frozenset()) -> list[str]:
    words = {s.value for s in S} - allowed
    return [
        f"{node.lineno}: {node.value!r}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in words
    ]


def test_no_status_is_spelled_out_outside_the_table() -> None:
    found = {}
    for path in _python_files():
        name = path.relative_to(PACKAGE).as_posix()
        if name in ALLOWED or name.startswith("store/migrations/"):
            continue
        if hits := _status_literals(path, {w for f, w in ALLOWED_WORDS if f == name}):
            found[name] = hits
    assert found == {}


def test_the_literal_scan_sees_a_status_written_out() -> None:
    assert _status_literals(PACKAGE / "core/notification_status.py")
