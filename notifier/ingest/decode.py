"""Raw stream messages → valid events or dead letters with a reason."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from notifier.contracts.events import OrderEvent
from notifier.core.model import DeadLetter, DeadLetterReason, IncomingEvent, RawMessage

SUBJECT_PREFIX = "orders.state."


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


def decode(message: RawMessage) -> IncomingEvent | DeadLetter:
    """Parse and validate one message; never raises for bad input."""
    try:
        body: Any = json.loads(message.data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return DeadLetter(message, DeadLetterReason.INVALID_JSON, str(exc))
    if not isinstance(body, dict):
        return DeadLetter(message, DeadLetterReason.SCHEMA_VIOLATION, "body must be a JSON object")
    subject_source = message.subject.removeprefix(SUBJECT_PREFIX)
    if "source" not in body and subject_source != message.subject:
        body["source"] = subject_source
    try:
        event = OrderEvent.model_validate(body)
    except ValidationError as exc:
        if any(e["loc"] == ("state",) and e["type"] == "enum" for e in exc.errors()):
            return DeadLetter(
                message, DeadLetterReason.UNKNOWN_STATE, f"unknown state {body.get('state')!r}"
            )
        return DeadLetter(message, DeadLetterReason.SCHEMA_VIOLATION, _first_errors(exc))
    return IncomingEvent.build(event, message)
