"""Raw stream messages → valid events or dead letters with a reason.

Every step is bounded before it runs: the body's size before it is read, its nesting
before it is parsed (``json.loads`` recurses), its strings before they are stored.
The body must be UTF-8 (RFC 8259): it is decoded here, strictly, rather than left to
``json.loads``, which guesses UTF-16 or UTF-32 from the first bytes. A UTF-8 byte
order mark is ignored, as RFC 8259 allows.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from notifier.contracts.events import OrderEvent
from notifier.contracts.limits import (
    EventLimits,
    LimitExceeded,
    attributes_need_care,
    clean_attributes,
    nested_deeper_than,
    occurred_at_problem,
    too_early,
)
from notifier.core.model import DeadLetter, DeadLetterReason, IncomingEvent, RawMessage

SUBJECT_PREFIX = "orders.state."
DEFAULT_LIMITS = EventLimits()
_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
#: a detail fits a header line: printable, and short
_DETAIL_CHARS = 500


#: a quoted literal in a validator's message: the value it was given
_QUOTED = re.compile(r"""('[^']*'|"[^"]*")""")


def _rule(err: ErrorDetails) -> str:
    """What rule the value broke, without the value: pydantic's own messages say what
    was expected, but a validator's (``value_error``) quote what it was given."""
    message = err["msg"]
    if err["type"] in ("value_error", "assertion_error"):
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        message = _QUOTED.sub("", message).strip().rstrip(":").strip()
    given = err.get("input")
    if isinstance(given, str) and given.strip():
        message = re.sub(rf"(?<![\w+]){re.escape(given)}(?!\w)", "…", message)
    return message or err["type"]


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    """Each error's field and rule, never the value (it may be a contact)."""
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {_rule(err)}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


class _Refused(Exception):
    """One step's refusal; :func:`decode` turns it into the dead letter."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decode(
    message: RawMessage, limits: EventLimits = DEFAULT_LIMITS, now: datetime | None = None
) -> IncomingEvent | DeadLetter:
    """Parse and validate one message; never raises for bad input.

    ``now`` is this service's clock (the batch's), for the clock-skew bound.
    """
    try:
        return _decode(message, limits, now or datetime.now(UTC))
    except _Refused as refused:
        return DeadLetter(message, refused.reason, _printable(refused.detail))


def _decode(message: RawMessage, limits: EventLimits, now: datetime) -> IncomingEvent:
    text = _text(message.data, limits)
    body = _parse(text, limits)
    if not isinstance(body, dict):
        raise _Refused(DeadLetterReason.SCHEMA_VIOLATION, "body must be a JSON object")
    subject_source = message.subject.removeprefix(SUBJECT_PREFIX)
    if "source" not in body and subject_source != message.subject:
        body["source"] = subject_source
    attributes = body.get("attributes")
    if isinstance(attributes, dict) and attributes_need_care(text, limits.max_string):
        try:
            clean_attributes(attributes, limits.max_string)
        except LimitExceeded as exc:
            raise _Refused(DeadLetterReason.LIMIT_EXCEEDED, str(exc)) from None
    try:
        event = OrderEvent.model_validate(body)
    except ValidationError as exc:
        if any(e["loc"] == ("state",) and e["type"] == "enum" for e in exc.errors()):
            raise _Refused(
                DeadLetterReason.UNKNOWN_STATE, f"unknown state {body.get('state')!r}"
            ) from None
        raise _Refused(DeadLetterReason.SCHEMA_VIOLATION, _first_errors(exc)) from None
    if (early := too_early(event.occurred_at)) is not None:
        raise _Refused(DeadLetterReason.SCHEMA_VIOLATION, early)
    if (ahead := occurred_at_problem(event.occurred_at, now, limits)) is not None:
        raise _Refused(DeadLetterReason.FUTURE_TIMESTAMP, ahead)
    return IncomingEvent.build(event, message)


def _text(data: bytes, limits: EventLimits) -> str:
    """The body as text, within the size limit."""
    if len(data) > limits.max_bytes:
        raise _Refused(
            DeadLetterReason.LIMIT_EXCEEDED,
            f"body is {len(data)} bytes; at most {limits.max_bytes} are allowed "
            "(NOTIFIER_EVENT_MAX_BYTES)",
        )
    return _utf8(data)


def _parse(text: str, limits: EventLimits) -> Any:
    """The JSON value of the text, within the nesting limit."""
    if nested_deeper_than(text, limits.max_depth):
        raise _Refused(
            DeadLetterReason.LIMIT_EXCEEDED,
            f"body nests objects and arrays more than {limits.max_depth} levels deep "
            "(NOTIFIER_EVENT_MAX_DEPTH)",
        )
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise _Refused(DeadLetterReason.INVALID_JSON, f"not JSON: {exc}") from None
    except (ValueError, RecursionError):
        raise _Refused(
            DeadLetterReason.INVALID_JSON,
            "not JSON: a number out of range (NaN, Infinity, 1e999, thousands of digits)",
        ) from None


def _utf8(data: bytes) -> str:
    if data.startswith(_UTF16_BOMS):
        raise _Refused(
            DeadLetterReason.INVALID_JSON,
            "body must be UTF-8 JSON; it starts with a UTF-16 or UTF-32 byte order mark",
        )
    data = data.removeprefix(_BOM)
    if b"\x00" in data:
        # valid UTF-8, but never in a JSON text: the telltale of UTF-16 or UTF-32
        raise _Refused(
            DeadLetterReason.INVALID_JSON,
            "body must be UTF-8 JSON; it holds NUL bytes (UTF-16 or UTF-32?)",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refused(
            DeadLetterReason.INVALID_JSON,
            f"body must be UTF-8 JSON; byte {exc.start} is not valid UTF-8",
        ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)
    return number


def _printable(detail: str) -> str:
    """A detail that fits one header line: controls and broken surrogates escaped, and
    bounded (a pydantic location can quote a key the publisher sent)."""
    text = detail.encode("utf-8", "backslashreplace").decode("utf-8")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 1] + "…"
