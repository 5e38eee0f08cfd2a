"""Quiet hours: ``normal`` and ``low`` SMS and push wait for the customer's morning.

A window is a local start and end time (``21:00-08:00``), read in the customer's own
time zone (``customer.timezone`` of the event); it may run over midnight. A
notification planned inside it is held until the window ends: the row stays
``queued`` with ``not_before`` set, and the outbox publishes it once that moment
passes (durable: nothing sleeps in memory). Which channels are held is declared by
each channel (``ChannelSpec.quiet_hours``): SMS and push; email, in-app and partner
webhooks never wait. ``urgent``/``high`` rules are never held.

The end of a window is a wall-clock time on a calendar day, so on a day the clocks
change the night is an hour shorter or longer; a local end time that does not exist
that day (inside the spring-forward gap) is read with the offset before the change
(02:30 becomes 03:30). Pure: the time is handed in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notifier.core.rules import Priority

_TIME = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_WINDOW = re.compile(rf"^\s*{_TIME}\s*-\s*{_TIME}\s*$")
#: priorities that wait for the end of quiet hours (``urgent`` is ``high``: never)
HELD_PRIORITIES = frozenset({Priority.NORMAL, Priority.LOW})


@dataclass(frozen=True, slots=True)
class QuietWindow:
    """Local start (inclusive) and end (exclusive) of quiet hours; over midnight when
    the start is later than the end."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietWindow | None:
        """``"21:00-08:00"`` → a window; ``""`` → none (quiet hours off). Seconds are
        optional (``21:00:00``). ``ValueError`` says what is wrong with anything else."""
        if not text.strip():
            return None
        found = _WINDOW.match(text)
        if found is None:
            raise ValueError("expected HH:MM-HH:MM (for example 21:00-08:00), or empty for off")
        h1, m1, s1, h2, m2, s2 = (int(g or 0) for g in found.groups())
        if h1 > 23 or h2 > 23 or max(m1, m2, s1, s2) > 59:
            raise ValueError("hours run 00-23, minutes and seconds 00-59")
        window = cls(time(h1, m1, s1), time(h2, m2, s2))
        if window.start == window.end:
            raise ValueError("start and end must differ")
        return window

    def ends_at(self, now: datetime, zone: ZoneInfo) -> datetime | None:
        """When the window ``now`` falls in ends (UTC), or ``None`` outside it."""
        local = now.astimezone(zone)
        t = local.time().replace(tzinfo=None)
        day = local.date()
        if self.start < self.end:
            if not self.start <= t < self.end:
                return None
        elif t >= self.start:
            day += timedelta(days=1)  # over midnight: it ends tomorrow morning
        elif t >= self.end:
            return None
        return datetime.combine(day, self.end, tzinfo=zone).astimezone(UTC)


def no_override(customer_id: str) -> QuietWindow | None:
    """No customer has a window of their own (the seam for stored preferences)."""
    return None


def no_zone(customer_id: str) -> str | None:
    """No customer has a time zone of their own stored (the event's counts)."""
    return None


@dataclass(frozen=True, slots=True)
class QuietHours:
    """The service's quiet hours: a default window (None: off), and per customer an
    optional window of their own that replaces it."""

    window: QuietWindow | None = None
    #: customer id → their own window, or None for the default
    override: Callable[[str], QuietWindow | None] = field(default=no_override)
    #: customer id → the time zone they stored, or None for the event's
    zones: Callable[[str], str | None] = field(default=no_zone)

    @property
    def off(self) -> bool:
        """No window for anyone: nothing is ever held."""
        return self.window is None and self.override is no_override

    def hold_until(
        self,
        *,
        customer_id: str,
        timezone: str,
        priority: int,
        held_channel: bool,
        now: datetime,
    ) -> datetime | None:
        """Until when a notification waits (UTC), or ``None`` to send it now.

        ``held_channel``: its channel waits out quiet hours (SMS, push). An unknown
        time zone (the event contract refuses one) reads as UTC.
        """
        if not held_channel or priority not in HELD_PRIORITIES:
            return None
        window = self.override(customer_id) or self.window
        if window is None:
            return None
        return window.ends_at(now, _zone(self.zones(customer_id) or timezone))


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
