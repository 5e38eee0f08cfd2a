"""The published contract files match the code, and bad events are refused with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from notifier.contracts.asyncapi import asyncapi_app
from notifier.contracts.events import event_json_schema
from notifier.core.model import DeadLetter, IncomingEvent, RawMessage
from notifier.ingest.decode import decode

DOCS = Path(__file__).resolve().parents[2] / "docs"

GOOD = {
    "event_id": "e1",
    "order_id": "o1",
    "state": "placed",
    "occurred_at": "2026-11-20T10:00:00+01:00",
    "customer": {
        "id": "c1",
        "email": "a@example.com",
        "phone": "+33612345678",
        "locale": "fr-CA",
        "timezone": "America/Montreal",
    },
}


def test_published_json_schema_matches_the_model() -> None:
    published = json.loads((DOCS / "order-event.v1.schema.json").read_text())
    hint = "run `notifier schema > docs/order-event.v1.schema.json`"
    assert published == event_json_schema(), hint


def test_asyncapi_document_describes_both_channels() -> None:
    spec = asyncapi_app().schema.to_specification().to_jsonable()
    assert set(spec["channels"]) == {"orders.state.<source>", "deadletter.orders.<reason>"}
    assert (DOCS / "asyncapi.yaml").is_file()


def _raw(body: object, subject: str = "orders.state.web") -> RawMessage:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawMessage(data=data, headers={}, subject=subject, seq=1)


def test_source_defaults_to_the_subject_token() -> None:
    result = decode(_raw(GOOD, "orders.state.shopify"))
    assert isinstance(result, IncomingEvent)
    assert result.event.source == "shopify"


@pytest.mark.parametrize(
    ("body", "reason", "detail"),
    [
        (b"\xff\xfe", "invalid_json", ""),
        (b"[1, 2]", "schema_violation", "JSON object"),
        ({**GOOD, "state": "lost"}, "unknown_state", "lost"),
        ({**GOOD, "occurred_at": "2026-11-20T10:00:00"}, "schema_violation", "occurred_at"),
        ({**GOOD, "ocurred_at": "x"}, "schema_violation", "ocurred_at"),
        ({**GOOD, "customer": {**GOOD["customer"], "phone": "0612"}}, "schema_violation", "E.164"),
        (
            {**GOOD, "customer": {**GOOD["customer"], "timezone": "Mars/Base"}},
            "schema_violation",
            "time zone",
        ),
        ({k: v for k, v in GOOD.items() if k != "event_id"}, "schema_violation", "event_id"),
    ],
)
def test_bad_events_get_a_reason(body: object, reason: str, detail: str) -> None:
    result = decode(_raw(body))
    assert isinstance(result, DeadLetter)
    assert result.reason.value == reason
    assert detail in result.detail


def test_same_content_same_hash_whatever_the_key_order() -> None:
    a = decode(_raw(GOOD))
    b = decode(_raw(dict(reversed(list(GOOD.items())))))
    assert isinstance(a, IncomingEvent) and isinstance(b, IncomingEvent)
    assert a.content_hash == b.content_hash
