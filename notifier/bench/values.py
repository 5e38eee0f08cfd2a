"""Reading one value of a bench run's results, and writing it for people.

The runner's results dict may lack any phase (``--quick``, ``--skip``) and any number
in it may be ``None`` or NaN. These helpers take a value by its path without
failing on what is missing, and print it with its unit or as a dash, so that the
budget (``budget.py``), the Markdown (``report.py``) and the PNG (``plot.py``) agree
on what "not measured" looks like.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any

DASH = "\u2014"
TIMES = "\u00d7"


def at(results: Mapping[str, Any], *path: str) -> Any:
    """``results[path[0]][path[1]]…``, or None where a level is missing."""
    node: Any = results
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def num(value: Any) -> float | None:
    """The value as a float, or None for anything that is not a measured number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def fmt(value: Any, spec: str, unit: str = "") -> str:
    """The number formatted with ``spec`` and ``unit``, or a dash."""
    number = num(value)
    return DASH if number is None else f"{number:{spec}}{unit}"


#: the common formats: a count with thousands separators, milliseconds, megabytes
count = partial(fmt, spec=",.0f")
ms = partial(fmt, spec=".1f", unit=" ms")
mb = partial(fmt, spec=".1f", unit=" MB")


def ratio(value: Any) -> str:
    """A ratio with the times sign: two decimals below one, where they matter."""
    number = num(value)
    if number is None:
        return DASH
    return f"{number:.2f}{TIMES}" if number < 1 else f"{number:.1f}{TIMES}"


def megabytes(size: Any) -> float | None:
    """A size in bytes as (decimal) megabytes."""
    number = num(size)
    return None if number is None else number / 1_000_000


def per_name(counts: Any) -> str:
    """``notifications 10, events 4``: a mapping of counts on one line."""
    if not isinstance(counts, Mapping) or not counts:
        return DASH
    return ", ".join(f"{name} {count(n)}" for name, n in counts.items())
