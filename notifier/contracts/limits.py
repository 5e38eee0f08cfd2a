"""What one event may weigh, and how far its clock may run ahead of ours.

The limits keep a broken or hostile publisher from stalling ingest: a body nested a
thousand levels deep made ``json.loads`` raise ``RecursionError``, which nothing
expected, so its batch was retried for ever. They are checked before the body is
parsed where they can be (bytes, nesting), without recursion, so no input can raise
anything but a refusal with a reason.

``occurred_at`` orders an order's history; an event stamped ``9999-12-31`` would make
every real event after it stale, so the clock skew is bounded too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from notifier.contracts.events import clean_lines, clean_text

#: before this, ``occurred_at`` is a placeholder or a bug (``0001-01-01``, epoch 0)
EARLIEST_OCCURRED_AT = datetime(2000, 1, 1, tzinfo=UTC)
#: a JSON string (skipped whole, escapes included) or one bracket
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
#: what a control character or a surrogate looks like in JSON text: raw (C0 controls
#: cannot be), or escaped; an escaped backslash before ``n`` matches too, and that
#: false alarm only costs a walk
_RAW_CONTROL = re.compile("[\x7f-\x9f\u2028\u2029]")
_ESCAPED_CONTROL = re.compile(r"\\(?:[bfnrt]|u(?:00[0189]|007[fF]|202[89]|[dD][89a-fA-F]))")


@dataclass(frozen=True, slots=True)
class EventLimits:
    """Bounds on one event; the defaults are the settings' defaults (README: event contract)."""

    #: the body's size in bytes, checked before anything else
    max_bytes: int = 65_536
    #: how deeply objects and arrays may nest, counting the body itself as 1
    max_depth: int = 32
    #: the longest string (or key) in ``attributes``, in characters; the typed fields
    #: have their own, smaller limits
    max_string: int = 10_000
    #: how far ``occurred_at`` may be ahead of this service's clock
    max_clock_skew_s: float = 300.0


class LimitExceeded(ValueError):
    """An event is bigger than :class:`EventLimits` allow; the message says where."""


def nested_deeper_than(text: str, limit: int) -> bool:
    """Whether JSON ``text`` nests objects and arrays more than ``limit`` deep.

    A scan, not a parse: it never recurses. A body with no more brackets than the limit
    cannot exceed it, so the common case costs two ``str.count`` calls.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for token in _TOKEN.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif bracket in ("]", "}"):
            depth -= 1
    return False


def attributes_need_care(text: str, max_string: int) -> bool:
    """Whether :func:`clean_attributes` could change or refuse anything in the event
    whose JSON is ``text``: a string can only be too long in a text that long, and a
    control character or surrogate only arrives raw (C1, DEL, U+2028/9) or as an escape.
    Most events have neither, and skip the walk."""
    if len(text) > max_string or "\x7f" in text:
        return True
    if not text.isascii() and _RAW_CONTROL.search(text):
        return True
    return "\\" in text and _ESCAPED_CONTROL.search(text) is not None


def clean_attributes(attributes: dict[str, Any], max_string: int) -> None:
    """Make ``attributes`` safe to render and store, in place; ``LimitExceeded`` if not.

    Attributes are free-form and only shown to customers, so a control character or a
    broken surrogate in them is repaired (keys as names are, values keeping their line
    breaks), never a reason to lose the message; a string longer than ``max_string`` is
    refused, naming where it is. The walk keeps its own stack: nesting is bounded
    already, but nothing here should depend on the interpreter's recursion limit.
    """
    stack: list[tuple[str, dict[str, Any] | list[Any]]] = [("attributes", attributes)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, list):
            for index, item in enumerate(node):
                node[index] = _value(f"{path}.{index}", item, max_string, stack)
            continue
        for key, item in list(node.items()):
            if len(key) > max_string:
                raise LimitExceeded(f"{path}: a key is longer than {max_string} characters")
            name = clean_text(key)
            if name != key:
                del node[key]
            node[name] = _value(f"{path}.{_segment(name)}", item, max_string, stack)


def _value(
    path: str, value: Any, max_string: int, stack: list[tuple[str, dict[str, Any] | list[Any]]]
) -> Any:
    """A string cleaned, a container put on the stack, anything else as it is."""
    if isinstance(value, str):
        if len(value) > max_string:
            raise LimitExceeded(f"{path}: longer than {max_string} characters")
        return clean_lines(value)
    if isinstance(value, dict | list):
        stack.append((path, value))
    return value


def _segment(key: str) -> str:
    """A key as it may appear in a detail: a plain name, else a placeholder (a key is
    the publisher's text, and details must not carry what they were sent)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]{1,40}", key) else "<key>"


def occurred_at_problem(occurred_at: datetime, now: datetime, limits: EventLimits) -> str | None:
    """Why ``occurred_at`` cannot be believed as a time in the past, or ``None``.

    Only the future is a matter of this clock (``future_timestamp``); a date before
    2000 is wrong whatever the time (``schema_violation``), see :func:`too_early`.
    """
    ahead = (occurred_at - now).total_seconds()
    if ahead > limits.max_clock_skew_s:
        return (
            f"occurred_at is {_span(ahead)} ahead of this service's clock; at most "
            f"{limits.max_clock_skew_s:.0f} s is allowed (NOTIFIER_EVENT_MAX_CLOCK_SKEW_S): "
            "check the publisher's clock"
        )
    return None


def _span(seconds: float) -> str:
    """A duration as a person reads it (and as no redaction mistakes for a number)."""
    for unit, size in (("day", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            count = seconds / size
            plural = "s" if unit == "day" and round(count) != 1 else ""
            return f"{count:.0f} {unit}{plural}"
    return f"{seconds:.0f} s"


def too_early(occurred_at: datetime) -> str | None:
    """A refusal for an ``occurred_at`` before 2000, which is a placeholder, not a time."""
    if occurred_at < EARLIEST_OCCURRED_AT:
        return "occurred_at: must not be before 2000-01-01T00:00:00Z"
    return None
