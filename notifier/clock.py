"""What time it is, behind a seam tests can hold still.

Timers ask a ``Clock`` instead of calling ``datetime.now``: the service runs on the
``SystemClock``; a test hands in a ``ManualClock`` and moves it forward by hours in
a microsecond, so "held for 48 hours" is tested without waiting 48 hours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """The current moment, aware and in UTC."""

    def now(self) -> datetime:
        """Now, as an aware UTC datetime."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        """Now, from the operating system."""
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to (tests, the benchmark's aged runs)."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("a ManualClock needs an aware datetime")
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        """The moment the clock was last set to."""
        return self._at

    def advance(self, by: timedelta) -> datetime:
        """Move forward (never back: nothing here may un-happen) and say where to."""
        if by < timedelta(0):
            raise ValueError("a clock does not go back")
        self._at += by
        return self._at
