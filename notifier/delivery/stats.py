"""Delivery counts and rates, read from the ledger (so every replica reports the same).

A notification counts in the window in which it was created, under its current
status. The delivery rate of a group is ``(sent + delivered) / (sent + delivered +
failed + undelivered)``: notifications still on their way, suppressed ones and
fallback channels on standby are left out, as they neither got through nor failed.
An SMS counts as got-through once Twilio accepted it, until a receipt says otherwise.
``render_failures`` singles out the failed notifications that never reached a
provider because they could not be rendered (a template error, or output the channel
cannot carry): nobody was told, and the template or the event's data needs a look.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core import notification_status as ledger_status
from notifier.core.notification_status import NotificationStatus
from notifier.store.moves import status_values
from notifier.store.tables import notifications

N = notifications.c
STATUSES = tuple(s.value for s in NotificationStatus)
GOT_THROUGH = tuple(status_values(ledger_status.GOT_THROUGH))
NOT_THROUGH = tuple(status_values(ledger_status.NOT_THROUGH))
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_S = 400 * 86400


def parse_window(text: str) -> float:
    """``90s``, ``15m``, ``1h``, ``7d`` or plain seconds; ``ValueError`` says what is accepted."""
    match = _WINDOW.match(text)
    if match is None:
        raise ValueError(f"window {text!r} is not a duration like 90s, 15m, 1h or 7d")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not 0 < seconds <= MAX_WINDOW_S:
        raise ValueError(f"window {text!r} must be more than 0 and at most 400d")
    return seconds


@dataclass(slots=True)
class Counts:
    """Notifications per status, with the delivery rate they make."""

    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))

    def add(self, status: str, count: int) -> None:
        """Tally ``count`` notifications in ``status``."""
        self.by_status[status] = self.by_status.get(status, 0) + count

    @property
    def finished(self) -> int:
        """Notifications that either got through or did not."""
        return sum(self.by_status[s] for s in (*GOT_THROUGH, *NOT_THROUGH))

    @property
    def rate(self) -> float | None:
        """The share that got through, or ``None`` when none has finished."""
        done = self.finished
        if done == 0:
            return None
        return sum(self.by_status[s] for s in GOT_THROUGH) / done

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the counts, the total and the rate."""
        return {
            "counts": dict(self.by_status),
            "total": sum(self.by_status.values()),
            "delivery_rate": self.rate,
        }


@dataclass(slots=True)
class DeliveryStats:
    """Counts for one window: in total, per channel, and per channel x provider x
    template x state."""

    window_s: float
    since: datetime
    total: Counts = field(default_factory=Counts)
    channels: dict[str, Counts] = field(default_factory=dict)
    groups: dict[tuple[str, str, str, str], Counts] = field(default_factory=dict)
    #: (channel, template) → notifications that failed as they were rendered
    render_failed: dict[tuple[str, str], int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The shape ``GET /v1/stats/delivery`` returns."""
        return {
            "window_s": self.window_s,
            "since": self.since.isoformat(),
            "total": self.total.as_dict(),
            "channels": {name: c.as_dict() for name, c in sorted(self.channels.items())},
            "groups": [
                {"channel": k[0], "provider": k[1], "template": k[2], "state": k[3], **c.as_dict()}
                for k, c in sorted(self.groups.items())
            ],
            "render_failures": {
                "total": sum(self.render_failed.values()),
                "by_template": [
                    {"channel": k[0], "template": k[1], "count": n}
                    for k, n in sorted(self.render_failed.items())
                ],
            },
        }


async def delivery_stats(
    engine: AsyncEngine,
    window_s: float,
    *,
    channel: str | None = None,
    providers: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> DeliveryStats:
    """Count the ledger's notifications created in the last ``window_s`` seconds.

    ``providers`` names the provider of a channel for notifications no provider has
    seen yet (queued, suppressed).
    """
    since = (now or datetime.now(UTC)) - timedelta(seconds=window_s)
    stmt = (
        select(N.channel, N.provider, N.template, N.state, N.status, func.count())
        .where(N.created_at >= since)
        .group_by(N.channel, N.provider, N.template, N.state, N.status)
    )
    if channel is not None:
        stmt = stmt.where(N.channel == channel)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    stats = DeliveryStats(window_s=window_s, since=since)
    known = providers or {}
    for ch, provider, template, state, status, count in rows:
        who = provider or known.get(ch, "none")
        stats.total.add(status, count)
        stats.channels.setdefault(ch, Counts()).add(status, count)
        stats.groups.setdefault((ch, who, template, state), Counts()).add(status, count)
    stats.render_failed = await render_failures(engine, since, channel=channel)
    return stats


#: how the pipeline's last_error begins when rendering failed (``core.drafts``)
RENDER_ERROR_PREFIX = "template "


async def render_failures(
    engine: AsyncEngine, since: datetime, *, channel: str | None = None
) -> dict[tuple[str, str], int]:
    """(channel, template) → notifications created since ``since`` that failed as they
    were rendered: failed without a single attempt at sending."""
    stmt = (
        select(N.channel, N.template, func.count())
        .where(
            N.created_at >= since,
            N.status == NotificationStatus.FAILED.value,
            N.attempts == 0,
            N.last_error.startswith(RENDER_ERROR_PREFIX),
        )
        .group_by(N.channel, N.template)
    )
    if channel is not None:
        stmt = stmt.where(N.channel == channel)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return {(ch, template): count for ch, template, count in rows}
