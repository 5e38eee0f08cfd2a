"""A notification's status in the ledger and its legal moves, as one table.

A status only ever changes by one of the moves below. Each is written as a
conditional update, ``UPDATE … SET status = <to> WHERE status IN (<its sources>)``,
built from this table (``notifier.store.moves``), so a move that lost a race (a
receipt that overtook the send's record, a revision while a sender holds the row, a
second replay of one dead letter) finds nothing to change instead of moving a row
backwards. Every set of statuses the code asks about is derived from it, below the
table. ``(new)`` is the row's insertion by the batch that plans it::

    from        move              to
    (new)       plan              queued, failed, suppressed, standby
    queued      claim             sending
                revise            queued, failed, suppressed
                withdraw          suppressed
                erase             suppressed
                supersede         suppressed
    sending     reclaim           sending
                send              sent
                receipt_ok        delivered
                receipt_failed    undelivered, failed
                retry             queued
                release           queued
                give_up           failed, suppressed
    sent        receipt_ok        delivered
                receipt_failed    undelivered, failed
    delivered   (none)
    undelivered (none)
    failed      revise            queued, failed, suppressed, standby
                replay            queued
    suppressed  revise            queued, failed, suppressed, standby
    standby     fall_back         queued
                stand_down        suppressed
                revise            queued, failed, suppressed, standby
                withdraw          suppressed
                erase             suppressed
                supersede         suppressed

A revision never puts a queued row on standby: the channel was already handed the
message, so it keeps it. A send recorded after its receipt (a fast SMS callback)
keeps the receipt's status: it is no move. ``delivered``, ``undelivered``, ``failed``
and ``suppressed`` are terminal: nothing moves them but a new event that revises what
was never sent, or an operator's replay of a dead letter.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from notifier.errors import IllegalMove


class NotificationStatus(StrEnum):
    """A notification's fate in the ledger."""

    #: waiting for the dispatcher (possibly after a failed attempt)
    QUEUED = "queued"
    #: claimed by a dispatcher, being handed to the provider
    SENDING = "sending"
    #: the provider accepted it
    SENT = "sent"
    #: the provider's receipt says it reached the handset (SMS)
    DELIVERED = "delivered"
    #: the provider's receipt says it could not reach the handset (SMS)
    UNDELIVERED = "undelivered"
    #: given up: a permanent error, too many attempts, a rendering that fails or does
    #: not fit, or a receipt saying ``failed``
    FAILED = "failed"
    #: decided not to send (no contact, opted out, channel off, withdrawn, erased, dead
    #: token, stale, or not needed: an earlier channel of its fallback rule got through)
    SUPPRESSED = "suppressed"
    #: a fallback channel, sent only if the ones before it in its rule fail
    STANDBY = "standby"


class Move(StrEnum):
    """Why a notification's status changes: each move is one conditional update."""

    #: a batch plans it: queued to send, standby behind an earlier fallback channel,
    #: suppressed when withheld (no contact, opted out, channel off), failed when it
    #: does not render or fit its channel
    PLAN = "plan"
    #: a dispatcher leases it to send it
    CLAIM = "claim"
    #: its lease ran out while sending (the sender died): another dispatcher takes it
    RECLAIM = "reclaim"
    #: the provider accepted it
    SEND = "send"
    #: the provider's receipt says it reached the handset
    RECEIPT_OK = "receipt_ok"
    #: the provider's receipt says it did not (undelivered, or failed)
    RECEIPT_FAILED = "receipt_failed"
    #: a transient failure: tried again after a backoff
    RETRY = "retry"
    #: handed back untried (open circuit, lease running short): the attempt is not counted
    RELEASE = "release"
    #: a permanent error or the attempt limit (failed); a dead push token or a customer
    #: erased while it was in flight (suppressed)
    GIVE_UP = "give_up"
    #: the fallback channel before it failed: this one is sent
    FALL_BACK = "fall_back"
    #: a fallback channel before it got through: this one is not needed
    STAND_DOWN = "stand_down"
    #: a revised event re-renders a notification not sent yet; the new rendering
    #: decides its status
    REVISE = "revise"
    #: the event that called for it was retracted, or revised so it no longer does
    WITHDRAW = "withdraw"
    #: its customer was erased before it went out
    ERASE = "erase"
    #: its order moved on before it went out ("out for delivery" once delivered): stale
    SUPERSEDE = "supersede"
    #: an operator re-drives its dead letter (``notifier dlq replay``)
    REPLAY = "replay"


S = NotificationStatus
M = Move
_UNSENT = (S.QUEUED, S.FAILED, S.SUPPRESSED, S.STANDBY)

#: from → to → the moves that take it there; ``None`` is a row not written yet
MOVES: dict[NotificationStatus | None, dict[NotificationStatus, frozenset[Move]]] = {
    None: {s: frozenset({M.PLAN}) for s in _UNSENT},
    S.QUEUED: {
        S.SENDING: frozenset({M.CLAIM}),
        S.QUEUED: frozenset({M.REVISE}),
        S.FAILED: frozenset({M.REVISE}),
        S.SUPPRESSED: frozenset({M.REVISE, M.WITHDRAW, M.ERASE, M.SUPERSEDE}),
    },
    S.SENDING: {
        S.SENDING: frozenset({M.RECLAIM}),
        S.SENT: frozenset({M.SEND}),
        S.DELIVERED: frozenset({M.RECEIPT_OK}),
        S.UNDELIVERED: frozenset({M.RECEIPT_FAILED}),
        S.FAILED: frozenset({M.RECEIPT_FAILED, M.GIVE_UP}),
        S.QUEUED: frozenset({M.RETRY, M.RELEASE}),
        S.SUPPRESSED: frozenset({M.GIVE_UP}),
    },
    S.SENT: {
        S.DELIVERED: frozenset({M.RECEIPT_OK}),
        S.UNDELIVERED: frozenset({M.RECEIPT_FAILED}),
        S.FAILED: frozenset({M.RECEIPT_FAILED}),
    },
    S.DELIVERED: {},
    S.UNDELIVERED: {},
    S.FAILED: {
        S.QUEUED: frozenset({M.REVISE, M.REPLAY}),
        S.FAILED: frozenset({M.REVISE}),
        S.SUPPRESSED: frozenset({M.REVISE}),
        S.STANDBY: frozenset({M.REVISE}),
    },
    S.SUPPRESSED: {s: frozenset({M.REVISE}) for s in _UNSENT},
    S.STANDBY: {
        S.QUEUED: frozenset({M.REVISE, M.FALL_BACK}),
        S.FAILED: frozenset({M.REVISE}),
        S.SUPPRESSED: frozenset({M.REVISE, M.WITHDRAW, M.ERASE, M.STAND_DOWN, M.SUPERSEDE}),
        S.STANDBY: frozenset({M.REVISE}),
    },
}


def ordered(statuses: Iterable[NotificationStatus]) -> list[NotificationStatus]:
    """The statuses in the order they are declared, so a statement built from a set is
    the same text every time (and its compiled form can be cached)."""
    wanted = set(statuses)
    return [s for s in NotificationStatus if s in wanted]


def sources(move: Move, to: NotificationStatus | None = None) -> frozenset[NotificationStatus]:
    """The statuses ``move`` leaves from (towards ``to``, when given); ``IllegalMove`` when
    the table has no such move, so a conditional update can never be built for one."""
    found = frozenset(
        frm
        for frm, exits in MOVES.items()
        if frm is not None
        for target, moves in exits.items()
        if move in moves and (to is None or target == to)
    )
    if not found:
        raise IllegalMove(f"no status moves to {to} by {move}" if to else f"no move {move}")
    return found


def targets(move: Move) -> frozenset[NotificationStatus]:
    """The statuses ``move`` leads to."""
    return frozenset(
        target for exits in MOVES.values() for target, moves in exits.items() if move in moves
    )


def check(move: Move, frm: NotificationStatus | str | None, to: NotificationStatus | str) -> None:
    """Raise ``IllegalMove`` unless ``move`` may take a row from ``frm`` to ``to``."""
    start = None if frm is None else NotificationStatus(frm)
    if move not in MOVES[start].get(NotificationStatus(to), frozenset()):
        raise IllegalMove(f"{start or '(new)'} → {to} is not a {move}")


_ALL = frozenset(NotificationStatus)

#: on its way: queued, or held by a sender; a later message of the same order on the
#: same channel waits for these
PENDING = sources(M.CLAIM) | sources(M.RECLAIM)
#: held by a sender, being handed to the provider
IN_FLIGHT = targets(M.CLAIM)
#: nothing to claim: a dispatch message for one of these is done, and retention may
#: forget it (a fallback channel that was never needed is as settled as the rest)
SETTLED = _ALL - PENDING
#: may still go out without anyone acting: pending, or a fallback channel on standby
UNSETTLED = PENDING | sources(M.FALL_BACK)
#: the customer has not been told: a revision may rewrite the row
UNSENT = sources(M.REVISE)
#: the customer was (or is being) told: a revision is corrected, not rewritten
TOLD = _ALL - UNSENT
#: the provider took it and no receipt says otherwise: counts for the delivery rate
GOT_THROUGH = targets(M.SEND) | targets(M.RECEIPT_OK)
#: a provider or its receipt said no: counts against the delivery rate
NOT_THROUGH = targets(M.RECEIPT_FAILED)
#: what a receipt may have left a row in before the send's own record arrives
RECEIPTED = targets(M.RECEIPT_OK) | targets(M.RECEIPT_FAILED)
#: what an operator may re-drive from its dead letter
REPLAYABLE = sources(M.REPLAY)
#: moves that reopen a terminal row: a new event, or an operator
REOPENING = frozenset({M.REVISE, M.REPLAY})
#: nothing moves these but a reopening move
TERMINAL = frozenset(
    s
    for s in NotificationStatus
    if all(moves <= REOPENING for to, moves in MOVES[s].items() if to != s)
)
