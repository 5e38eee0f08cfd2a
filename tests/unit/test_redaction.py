"""Error text keeps what went wrong and where, never the contact it was about."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from notifier.core.model import DeadLetter, DeadLetterReason, RawMessage
from notifier.ingest.deadletter_store import index_entry
from notifier.ingest.deadletters import dead_letter_detail, letter_headers
from notifier.ingest.decode import decode
from notifier.redaction import redact

TOKEN = "fGx2" + "A1b2C3d4E5f6G7h8I9j0" * 7 + ":APA91bH"


@pytest.mark.parametrize(
    ("text", "known", "expected"),
    [
        (
            "recipient refused: 550 <jane.doe@example.com> unknown",
            (),
            "recipient refused: 550 <<email>> unknown",
        ),
        ("not an email address: 'jane.doe@example'", (), "not an email address: '<email>'"),
        ("The 'To' number +14155550123 is not valid", (), "The 'To' number <phone> is not valid"),
        ("call +1 (415) 555-0123 instead", (), "call <phone> instead"),
        ("number 4155550123 blocked", (), "number <phone> blocked"),
        (f"FCM answered 404 UNREGISTERED: {TOKEN}", (), "FCM answered 404 UNREGISTERED: <token>"),
        ("mailbox of Ada Lovelace is full", ("Ada Lovelace",), "mailbox of <contact> is full"),
        # what is not a contact stays: codes, times, counts, ids
        (
            "smtp-421: try again at 2026-11-20T09:00:00+00:00 (attempt 12)",
            (),
            "smtp-421: try again at 2026-11-20T09:00:00+00:00 (attempt 12)",
        ),
        ("gave up after 40 attempts: twilio_21211", (), "gave up after 40 attempts: twilio_21211"),
        ("order O-1234 event O-1234-placed-0", (), "order O-1234 event O-1234-placed-0"),
    ],
)
def test_redact_replaces_contacts_by_their_kind(
    text: str, known: tuple[str, ...], expected: str
) -> None:
    assert redact(text, known) == expected


def _event(**customer: Any) -> bytes:
    body = {
        "event_id": "e-1",
        "order_id": "O-1",
        "state": "placed",
        "occurred_at": "2026-11-20T09:00:00+00:00",
        "customer": {"id": "cust-1", **customer},
    }
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("customer", "detail"),
    [
        ({"email": "jane.doe@example"}, "customer.email: not an email address"),
        ({"timezone": "Jane/Doe"}, "customer.timezone: unknown IANA time zone"),
        ({"locale": "jane doe"}, "customer.locale: not a BCP 47 language tag"),
        ({"phone": "555 0123"}, "customer.phone: phone must be E.164, e.g. +14155550123"),
        ({"name": 42}, "customer.name: Input should be a valid string"),
    ],
)
def test_a_schema_violation_names_the_field_and_the_rule_never_the_value(
    customer: dict[str, Any], detail: str
) -> None:
    letter = decode(RawMessage(_event(**customer), {}, "orders.state.web", 7))
    assert isinstance(letter, DeadLetter)
    assert letter.reason is DeadLetterReason.SCHEMA_VIOLATION
    assert letter.detail == detail
    for value in customer.values():
        if isinstance(value, str) and value not in detail:
            assert value not in letter.detail


def test_a_dead_letter_keeps_its_detail_on_one_line_and_without_contacts() -> None:
    message = RawMessage(b"{}", {"Nats-Msg-Id": "m-1", "Trace": "t"}, "orders.state.web", 9)
    letter = DeadLetter(
        message,
        DeadLetterReason.PROCESSING_ERROR,
        "KeyError: 'jane@example.com'\r\nat +14155550123",
    )
    assert dead_letter_detail(letter) == "KeyError: '<email>'  at <phone>"
    headers = letter_headers(letter)
    assert headers["Notifier-Detail"] == "KeyError: '<email>'  at <phone>"
    assert headers["Nats-Msg-Id"] == "dlq-9"
    assert headers["Original-Nats-Msg-Id"] == "m-1"
    assert headers["Trace"] == "t"


@pytest.mark.parametrize(
    ("subject", "data", "expected"),
    [
        ("orders.state.pos", _event(email="x@example.com"), ("pos", "O-1", "cust-1")),
        (
            "orders.state.pos",
            json.dumps({"source": "shop", "order_id": 12, "customer": {"id": 34}}).encode(),
            ("shop", "12", "34"),
        ),
        ("orders.state.web", b"{not json", ("web", None, None)),
        ("orders.state.web", b"[" * 100_000, ("web", None, None)),
        (
            "orders.state.web",
            json.dumps({"customer": "cust-1", "order_id": None}).encode(),
            ("web", None, None),
        ),
    ],
)
def test_the_index_keeps_what_the_payload_still_tells(
    subject: str, data: bytes, expected: tuple[str, str | None, str | None]
) -> None:
    at = datetime(2026, 11, 20, tzinfo=UTC)
    letter = DeadLetter(RawMessage(data, {}, subject, 5), DeadLetterReason.SCHEMA_VIOLATION, "d")
    entry = index_entry(letter, 77, at)
    assert (entry.source, entry.order_id, entry.customer_id) == expected
    assert (entry.seq, entry.original_seq, entry.received_at) == (77, 5, at)
