"""Bad input, tried systematically: whatever bytes arrive, ``decode`` returns an event
or a dead letter with a reason, never raises; what it accepts can be stored, read
back and sent.

Hypothesis draws the bodies: wrong types, huge strings, deep nesting, invalid UTF-8,
other encodings, NUL and CRLF in names and addresses, bad, far-past and far-future
timestamps, unknown fields. Derandomized, so a run is repeatable and CI never flakes
on a new draw; the examples still differ from test to test.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.contracts.events import OrderEvent
from notifier.contracts.limits import EARLIEST_OCCURRED_AT, EventLimits
from notifier.core.model import DeadLetter, DeadLetterReason, IncomingEvent, RawMessage
from notifier.ingest.decode import decode

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LIMITS = EventLimits()
PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
LINES_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

#: text with the characters that break things well represented
nasty_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(
            [
                "\x00",
                "\r",
                "\n",
                "\t",
                "\x1b",
                "\x7f",
                "\x85",
                "\u2028",
                "\ufeff",
                "\ud800",
                "\udfff",
                '"',
                "\\",
                "{",
                "[",
                "@",
            ]
        ),
    ),
    max_size=40,
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    nasty_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(nasty_text, inner, max_size=4)
    ),
    max_leaves=20,
)
#: stand-ins, expanded by :func:`encode` into the JSON text: a 100 kB string or a
#: thousand-level nesting would make every failure report (and the repr of every
#: example) as big
huge_strings = st.integers(0, 100_000).map(lambda n: f"\x00HUGE{n}\x00")
deep = st.integers(1, 3_000).map(lambda n: f"\x00DEEP{n}\x00")
_STAND_IN = re.compile(r'"\\u0000(HUGE|DEEP)(\d+)\\u0000"')


def _expand(match: re.Match[str]) -> str:
    n = int(match.group(2))
    return f'"{"x" * n}"' if match.group(1) == "HUGE" else "[" * n + "]" * n


wrong_types = st.one_of(
    json_scalars,
    st.lists(json_scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), json_scalars, max_size=3),
)
timestamps = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))]
        ),
    ).map(lambda d: d.isoformat()),
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2030, 1, 1)).map(
        lambda d: d.isoformat()
    ),  # no offset
    nasty_text,
)


def good_event() -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "order_id": "o-1",
        "source": "web",
        "state": "shipped",
        "occurred_at": "2026-11-30T11:00:00+00:00",
        "customer": {
            "id": "c-1",
            "name": "Ève",
            "email": "eve@example.com",
            "phone": "+14155550123",
            "push_tokens": ["tok-1"],
            "locale": "fr-CA",
            "timezone": "America/Montreal",
            "channels": ["email"],
        },
        "shipment": {
            "id": "p-1",
            "carrier": "DHL",
            "tracking_number": "JD1",
            "tracking_url": "https://t.example.com/JD1",
            "estimated_delivery": "2026-12-02T10:00:00+00:00",
        },
        "reason": "late",
        "attributes": {
            "items": [{"name": "Tea", "price": "4.50", "quantity": 2}],
            "currency": "EUR",
            "total": "9.00",
        },
    }


FIELDS = [
    ("event_id",),
    ("order_id",),
    ("source",),
    ("state",),
    ("occurred_at",),
    ("reason",),
    ("attributes",),
    ("retracted",),
    ("customer",),
    ("shipment",),
    ("customer", "id"),
    ("customer", "name"),
    ("customer", "email"),
    ("customer", "phone"),
    ("customer", "push_tokens"),
    ("customer", "locale"),
    ("customer", "timezone"),
    ("customer", "channels"),
    ("shipment", "id"),
    ("shipment", "carrier"),
    ("shipment", "tracking_number"),
    ("shipment", "tracking_url"),
    ("shipment", "estimated_delivery"),
    ("attributes", "items"),
    ("attributes", "total"),
]


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A good event with a few fields replaced by something hostile, and unknown fields."""
    body = good_event()
    for path in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3)):
        target = body
        for key in path[:-1]:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
        target[path[-1]] = draw(
            st.one_of(
                wrong_types,
                nasty_text,
                huge_strings,
                deep,
                json_values,
                timestamps,
            )
        )
    if draw(st.booleans()):
        body.update(draw(st.dictionaries(nasty_text, json_values, max_size=2)))
    return body


def encode(body: Any) -> bytes:
    """JSON as a publisher might send it; unpaired surrogates go out as escapes."""
    text = _STAND_IN.sub(_expand, json.dumps(body, ensure_ascii=False))
    return text.encode("utf-8", "backslashreplace")


def check(data: bytes) -> IncomingEvent | DeadLetter:
    """Decode, and hold the result to what every result must be."""
    result = decode(
        RawMessage(data=data, headers={}, subject="orders.state.web", seq=7), LIMITS, NOW
    )
    if isinstance(result, DeadLetter):
        assert result.reason in DeadLetterReason
        assert result.detail and result.detail.isprintable()
        assert len(result.detail) <= 500
        return result
    assert isinstance(result, IncomingEvent)
    event = result.event
    # it can be stored and read back as the same event (``StoredEvent.parsed``)
    result.payload.encode("utf-8")
    assert OrderEvent.model_validate_json(result.payload) == event
    # and decoding what was stored is a no-op: the same content, the same hash
    again = decode(RawMessage(result.payload.encode(), {}, "orders.state.web", 8), LIMITS, NOW)
    assert isinstance(again, IncomingEvent) and again.content_hash == result.content_hash
    customer, shipment = event.customer, event.shipment
    for plain in (
        event.event_id,
        event.order_id,
        event.source,
        customer.id,
        customer.email,
        customer.phone,
        customer.locale,
        customer.timezone,
        *customer.push_tokens,
        shipment and shipment.id,
        shipment and shipment.tracking_number,
        shipment and shipment.tracking_url,
    ):
        assert not (plain and CONTROL.search(plain))
    for text in (customer.name, event.reason, shipment and shipment.carrier):
        assert not (text and CONTROL.search(text))
    for text in _strings(event.attributes):
        assert not LINES_CONTROL.search(text)
        assert len(text) <= LIMITS.max_string
    assert event.occurred_at >= EARLIEST_OCCURRED_AT
    assert event.occurred_at <= NOW + timedelta(seconds=LIMITS.max_clock_skew_s)
    return result


def _strings(value: Any) -> list[str]:
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            found.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def test_the_good_event_is_accepted() -> None:
    assert isinstance(check(encode(good_event())), IncomingEvent)


@PROPERTY
@given(st.binary(max_size=2_000))
def test_any_bytes_get_an_event_or_a_reason(data: bytes) -> None:
    check(data)


@PROPERTY
@given(json_values)
def test_any_json_gets_an_event_or_a_reason(value: Any) -> None:
    check(encode(value))


@PROPERTY
@given(mutated_events())
def test_hostile_fields_get_an_event_or_a_reason(body: dict[str, Any]) -> None:
    check(encode(body))


@PROPERTY
@given(
    mutated_events(),
    st.sampled_from(
        ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "latin-1", "cp1252"]
    ),
)
def test_other_encodings_are_refused_as_not_utf8_or_read_as_utf8(
    body: dict[str, Any], codec: str
) -> None:
    body["customer"] = {**good_event()["customer"], "name": "Zoë Ærø"}
    data = json.dumps(body, ensure_ascii=False).encode(codec, "replace")
    result = check(data)
    if codec.startswith("utf-"):
        assert isinstance(result, DeadLetter)
        assert result.reason is DeadLetterReason.INVALID_JSON
        assert result.detail.startswith("body must be UTF-8 JSON")


@PROPERTY
@given(st.sampled_from([("customer", "name"), ("reason",), ("shipment", "carrier")]), nasty_text)
def test_names_with_controls_are_cleaned_and_kept(path: tuple[str, ...], text: str) -> None:
    body = good_event()
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = text
    result = check(encode(body))
    assert isinstance(result, IncomingEvent)


@PROPERTY
@given(
    st.sampled_from(
        [
            ("event_id",),
            ("order_id",),
            ("customer", "id"),
            ("customer", "email"),
            ("customer", "push_tokens", 0),
            ("shipment", "tracking_url"),
        ]
    ),
    nasty_text.filter(lambda t: CONTROL.search(t) is not None),
)
def test_identifiers_and_addresses_with_controls_are_refused(
    path: tuple[Any, ...], text: str
) -> None:
    body = good_event()
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = "x" + text
    result = check(encode(body))
    assert isinstance(result, DeadLetter)
    assert result.reason is DeadLetterReason.SCHEMA_VIOLATION
    assert result.detail.startswith(".".join(str(p) for p in path))


@PROPERTY
@given(timestamps)
def test_timestamps_are_believable_or_refused_with_a_reason(stamp: str) -> None:
    result = check(encode({**good_event(), "occurred_at": stamp}))
    if isinstance(result, DeadLetter):
        assert result.reason in (
            DeadLetterReason.SCHEMA_VIOLATION,
            DeadLetterReason.FUTURE_TIMESTAMP,
        )
        assert "occurred_at" in result.detail


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(st.integers(33, 20_000))
def test_deep_nesting_anywhere_is_refused_as_a_limit(depth: int) -> None:
    for where in ("attributes", "reason", "unknown"):
        result = check(encode({**good_event(), where: f"\x00DEEP{depth}\x00"}))
        assert isinstance(result, DeadLetter)
        assert result.reason is DeadLetterReason.LIMIT_EXCEEDED
