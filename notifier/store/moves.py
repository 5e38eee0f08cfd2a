"""The ledger's status moves as SQL: every conditional update of a notification's status
is built here from the table in ``notifier.core.notification_status``.

No other module writes a status into a ``WHERE`` by hand, so the statuses a move may
leave from are the table's, and a move the table does not have raises ``IllegalMove``
when its statement is built, before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Update, or_, update

from notifier.core.notification_status import (
    Move,
    NotificationStatus,
    check,
    ordered,
    sources,
)
from notifier.store.tables import notifications

N = notifications.c


def status_values(statuses: Iterable[NotificationStatus]) -> list[str]:
    """The statuses as the ledger stores them, for an ``IN`` list."""
    return [s.value for s in ordered(statuses)]


def any_of(
    column: ColumnElement[Any], statuses: Iterable[NotificationStatus]
) -> ColumnElement[bool]:
    """``column`` is one of ``statuses``: one equality each, not ``IN``, so the statement
    also goes into an executemany (an expanding ``IN`` cannot)."""
    return or_(*(column == s.value for s in ordered(statuses)))


def leaving(*moves: tuple[Move, NotificationStatus]) -> ColumnElement[bool]:
    """The row is where one of ``moves`` (each a move and where it goes) may start."""
    found: set[NotificationStatus] = set()
    for move, to in moves:
        found |= sources(move, to)
    return any_of(N.status, found)


def move(
    how: Move, to: NotificationStatus, *, only_from: NotificationStatus | str | None = None
) -> Update:
    """``UPDATE notifications SET status = to WHERE status IN (the table's sources of
    this move to to)``; the caller adds which rows and what else changes.

    ``only_from`` narrows the sources to the one status the caller saw the row in (a
    batch holds the order's lock and knows it); it must be a legal source too.
    """
    if only_from is None:
        where = leaving((how, to))
    else:
        check(how, only_from, to)
        where = N.status == NotificationStatus(only_from).value
    return update(notifications).where(where).values(status=to.value)
