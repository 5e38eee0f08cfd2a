"""Durations as a rules file writes them: ``30s``, ``15m``, ``48h``, ``2d``.

One parser, so every rule field that takes a duration reads the same way and refuses
the same mistakes (``48``, ``2 days``, ``-1h``) with the same words.
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"([1-9][0-9]{0,5})([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: object) -> timedelta:
    """``<number><unit>`` with unit s, m, h or d; raises ``ValueError`` saying the form."""
    if not isinstance(text, str) or not (found := _DURATION.fullmatch(text.strip())):
        raise ValueError("a duration is a whole number and a unit: 30s, 15m, 48h or 2d")
    amount, unit = found.groups()
    return timedelta(seconds=int(amount) * _UNIT_SECONDS[unit])


def format_duration(value: timedelta) -> str:
    """The shortest rules-file spelling of a duration (for messages and the README)."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
