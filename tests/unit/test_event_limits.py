"""What one event may weigh, what its text may hold, and how far ahead its clock may be:
each refusal has a reason and a detail naming the field and the rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifier.contracts.limits import EventLimits, nested_deeper_than
from notifier.core.model import DeadLetter, DeadLetterReason, IncomingEvent, RawMessage
from notifier.ingest.decode import decode

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
GOOD: dict[str, Any] = {
    "event_id": "e1",
    "order_id": "o1",
    "state": "placed",
    "occurred_at": "2026-11-30T11:00:00+00:00",
    "customer": {"id": "c1", "name": "Eve", "email": "eve@example.com"},
    "attributes": {"items": [{"name": "Tea", "price": "4.50"}], "currency": "EUR"},
}


def _raw(body: object) -> RawMessage:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawMessage(data=data, headers={}, subject="orders.state.web", seq=1)


def _refused(body: object, limits: EventLimits | None = None) -> DeadLetter:
    result = decode(_raw(body), limits or EventLimits(), NOW)
    assert isinstance(result, DeadLetter), result
    return result


def _accepted(body: object) -> IncomingEvent:
    result = decode(_raw(body), EventLimits(), NOW)
    assert isinstance(result, IncomingEvent), result
    return result


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_a_thousand_levels_of_nesting_is_refused_not_a_recursion_error() -> None:
    text = json.dumps(GOOD)[:-1] + f', "deep": {{"x": {_nested(1000)}}}}}'
    assert len(text) < 6_000
    letter = _refused(text.encode())
    assert letter.reason is DeadLetterReason.LIMIT_EXCEEDED
    assert "more than 32 levels deep" in letter.detail


def test_nesting_up_to_the_limit_is_fine() -> None:
    # the body (1), attributes (2), x (3): 29 more levels make 32
    body = {**GOOD, "attributes": {"x": json.loads(_nested(30))}}
    _accepted(body)
    body = {**GOOD, "attributes": {"x": json.loads(_nested(31))}}
    assert _refused(body).reason is DeadLetterReason.LIMIT_EXCEEDED


@pytest.mark.parametrize(
    ("text", "deeper"),
    [
        ('{"a": "[[[[[[[[[["}', False),  # brackets inside strings do not count
        ('{"a": "\\"[[[[[[[[[["}', False),  # nor after an escaped quote
        ('[[[{"a": [[1]]}]]]', True),
        ("[" * 3 + "]" * 3 + "[" * 3 + "]" * 3, False),  # siblings, not depth
    ],
)
def test_nesting_is_measured_outside_strings(text: str, deeper: bool) -> None:
    assert nested_deeper_than(text, 5) is deeper


def test_a_body_over_the_size_limit_is_refused_before_it_is_read() -> None:
    letter = _refused(b"x" * 2000, EventLimits(max_bytes=1024))
    assert letter.reason is DeadLetterReason.LIMIT_EXCEEDED
    assert "2000 bytes" in letter.detail and "1024" in letter.detail


def test_a_long_string_in_attributes_is_refused_naming_where() -> None:
    body = {**GOOD, "attributes": {"items": [{"name": "x" * 101}]}}
    letter = _refused(body, EventLimits(max_string=100))
    assert letter.reason is DeadLetterReason.LIMIT_EXCEEDED
    assert letter.detail == "attributes.items.0.name: longer than 100 characters"


def test_a_detail_never_quotes_an_odd_key() -> None:
    body = {**GOOD, "attributes": {"jane.doe@example.com": ["x" * 101]}}
    letter = _refused(body, EventLimits(max_string=100))
    assert "jane" not in letter.detail
    assert letter.detail == "attributes.<key>.0: longer than 100 characters"


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (json.dumps(GOOD).encode("utf-16"), "byte order mark"),
        (json.dumps(GOOD).encode("utf-32"), "byte order mark"),
        (json.dumps(GOOD).encode("utf-16-le"), "NUL bytes"),
        (json.dumps(GOOD).encode("utf-32-be"), "NUL bytes"),
        (
            json.dumps(GOOD, ensure_ascii=False).replace("Eve", "Ève").encode("latin-1"),
            "is not valid UTF-8",
        ),
    ],
)
def test_a_body_in_another_encoding_is_told_to_be_utf8(data: bytes, detail: str) -> None:
    letter = _refused(data)
    assert letter.reason is DeadLetterReason.INVALID_JSON
    assert letter.detail.startswith("body must be UTF-8 JSON")
    assert detail in letter.detail


def test_a_utf8_byte_order_mark_is_ignored() -> None:
    _accepted(b"\xef\xbb\xbf" + json.dumps(GOOD).encode())


@pytest.mark.parametrize("number", [b"NaN", b"-Infinity", b"1e999", b"9" * 5000])
def test_numbers_python_cannot_hold_are_invalid_json(number: bytes) -> None:
    data = json.dumps(GOOD)[:-1].encode() + b', "attributes": {"total": ' + number + b"}}"
    letter = _refused(data)
    assert letter.reason is DeadLetterReason.INVALID_JSON
    assert "number out of range" in letter.detail


@pytest.mark.parametrize(
    ("name", "cleaned"),
    [
        ("Hi Eve\r\nSubject: pwned\x00", "Hi Eve Subject: pwned"),
        ("Eve\tAdams", "Eve Adams"),
        ("Eve\u2028Adams\x85", "Eve Adams"),
        ("E\x07v\x1be\x9b", "Eve"),
        ("\ud800Eve", "\ufffdEve"),
        ("Ève  O'Brien", "Ève  O'Brien"),  # text without controls is kept as it is
    ],
)
def test_control_characters_in_names_become_spaces_or_go(name: str, cleaned: str) -> None:
    event = _accepted({**GOOD, "customer": {**GOOD["customer"], "name": name}}).event
    assert event.customer.name == cleaned


def test_reason_and_carrier_are_cleaned_too() -> None:
    body = {
        **GOOD,
        "state": "shipped",
        "reason": "late\r\nBcc: x",
        "shipment": {"id": "p1", "carrier": "DHL\x00\n Express"},
    }
    event = _accepted(body).event
    assert event.reason == "late Bcc: x"
    assert event.shipment is not None and event.shipment.carrier == "DHL Express"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("event_id",), "e\x001"),
        (("order_id",), "o1\r\nX: y"),
        (("customer", "id"), "c\u20281"),
        (("customer", "email"), "eve\x00@example.com"),
        (("customer", "email"), "eve@example.com\n"),
        (("customer", "phone"), "+14155550123\n"),
        (("customer", "locale"), "en\n"),
        (("customer", "timezone"), "UTC\x00"),
        (("customer", "push_tokens"), ["tok\r\nen"]),
        (("source",), "web\x00"),
        (("event_id",), "e\ud8001"),
    ],
)
def test_control_characters_in_identifiers_and_addresses_are_refused(
    path: tuple[str, ...], value: object
) -> None:
    body = json.loads(json.dumps(GOOD))
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    letter = _refused(body)
    assert letter.reason is DeadLetterReason.SCHEMA_VIOLATION
    assert letter.detail.startswith(".".join(path))
    assert letter.detail.isprintable()


def test_attributes_keep_their_lines_but_lose_other_controls() -> None:
    body = {
        **GOOD,
        "attributes": {
            "gift\x00note": "Happy birthday!\r\nLove,\tMum\x00\x07",
            "items": [{"name": "Tea\ud800"}],
        },
    }
    attributes = _accepted(body).event.attributes
    assert attributes == {
        "giftnote": "Happy birthday!\r\nLove,\tMum",
        "items": [{"name": "Tea\ufffd"}],
    }


@pytest.mark.parametrize(
    ("occurred_at", "reason", "detail"),
    [
        ("9999-12-31T23:59:59+00:00", DeadLetterReason.FUTURE_TIMESTAMP, "ahead of this service"),
        (
            (NOW + timedelta(seconds=301)).isoformat(),
            DeadLetterReason.FUTURE_TIMESTAMP,
            "at most 300 s",
        ),
        ("1970-01-01T00:00:00+00:00", DeadLetterReason.SCHEMA_VIOLATION, "before 2000-01-01"),
        ("0001-01-01T00:00:00+14:00", DeadLetterReason.SCHEMA_VIOLATION, "before 2000-01-01"),
    ],
)
def test_occurred_at_must_be_a_believable_time(
    occurred_at: str, reason: DeadLetterReason, detail: str
) -> None:
    letter = _refused({**GOOD, "occurred_at": occurred_at})
    assert letter.reason is reason
    assert letter.detail.startswith("occurred_at")
    assert detail in letter.detail


def test_occurred_at_within_the_skew_is_accepted() -> None:
    _accepted({**GOOD, "occurred_at": (NOW + timedelta(seconds=299)).isoformat()})
    _accepted({**GOOD, "occurred_at": "2000-01-01T00:00:00Z"})


def test_estimated_delivery_may_be_far_ahead() -> None:
    body = {
        **GOOD,
        "state": "shipped",
        "shipment": {"id": "p1", "estimated_delivery": "2027-06-01T00:00:00Z"},
    }
    _accepted(body)


def test_a_detail_is_one_printable_line() -> None:
    letter = _refused({**GOOD, "weird\r\n\x00key": 1})
    assert letter.reason is DeadLetterReason.SCHEMA_VIOLATION
    assert letter.detail.isprintable()


@pytest.mark.parametrize(
    ("field", "value"),
    [("timezone", "x" * 256), ("timezone", "Europe/" + "x" * 300), ("locale", "en-" + "abc-" * 20)],
)
def test_a_long_zone_or_locale_is_refused_not_an_error(field: str, value: str) -> None:
    # ZoneInfo looks the name up as a file: 256 characters raised OSError out of decode
    letter = _refused({**GOOD, "customer": {**GOOD["customer"], field: value}})
    assert letter.reason is DeadLetterReason.SCHEMA_VIOLATION
    assert letter.detail.startswith(f"customer.{field}")


def test_a_far_future_time_is_said_in_days_that_no_redaction_mistakes_for_a_phone() -> None:
    """The detail is kept redacted: 251606225076 seconds read as a phone number."""
    from datetime import UTC, datetime

    from notifier.contracts.limits import EventLimits, occurred_at_problem
    from notifier.redaction import redact

    now = datetime(2026, 11, 30, tzinfo=UTC)
    far = occurred_at_problem(datetime(9999, 12, 31, tzinfo=UTC), now, EventLimits()) or ""
    assert redact(far) == far
    assert "2912109 days ahead" in far
    near = occurred_at_problem(datetime(2026, 11, 30, 0, 7, tzinfo=UTC), now, EventLimits())
    assert near is not None and "7 min ahead" in near
