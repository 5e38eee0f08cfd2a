"""Raw stream messages → valid events or dead letters with a reason."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from notifier.contracts.events import OrderEvent
from notifier.core.model import DeadLetter, DeadLetterReason, IncomingEvent, RawMessage

SUBJECT_PREFIX = "orders.state."


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
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
