"""Composing an email refuses a control character in any header value: a second line of
defence behind the event contract, which strips them from free text before rendering.
Its savings (header classes built once, repeated headers parsed once, its own
boundary) leave the bytes sent as the standard library composes them."""

from __future__ import annotations

import email.policy
import re
from email.headerregistry import UnstructuredHeader
from typing import Any

import pytest
from aiosmtplib.email import flatten_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.channels import email_mime
from notifier.channels.base import OutboundMessage
from notifier.channels.email_mime import compose
from notifier.errors import PermanentDeliveryError

FROM = "Shop <orders@shop.example>"
MESSAGE_ID = "<n-1@shop.example>"


def _message(**overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "notification_id": "n-1",
        "channel": "email",
        "to": "Ada <ada@example.org>",
        "subject": "Your order has shipped",
        "text": "Hello Ada,\n\nit is on its way.\n",
        "locale": "en_GB",
        **overrides,
    }
    return OutboundMessage(**fields)


def test_a_clean_message_is_composed() -> None:
    mime, recipient = compose(_message(), from_addr=FROM, message_id=MESSAGE_ID)
    assert recipient == "ada@example.org"
    assert mime["Subject"] == "Your order has shipped"
    assert mime["Content-Language"] == "en-GB"
    # line breaks in the body are text, not headers: they stay
    assert "it is on its way." in mime.get_content()


# every C0 control (TAB too), DEL, a C1 control and the Unicode line separators
CONTROLS = [chr(c) for c in range(0x20)] + ["\x7f", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("char", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_a_control_character_in_the_subject_is_refused_naming_the_header(char: str) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        compose(_message(subject=f"Order{char}42 shipped"), from_addr=FROM, message_id=MESSAGE_ID)
    assert caught.value.code == "invalid-message"
    assert "Subject" in str(caught.value)
    assert "42" not in str(caught.value)  # the header is named, its value is not quoted


@pytest.mark.parametrize("char", ["\x00", "\t", "\x1b", "\x7f"], ids=lambda c: f"U+{ord(c):04X}")
def test_a_control_character_in_the_address_is_refused_without_quoting_it(char: str) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        compose(_message(to=f"ada@example.org{char}"), from_addr=FROM, message_id=MESSAGE_ID)
    assert caught.value.code == "invalid-address"
    assert "ada@" not in str(caught.value)


def test_a_control_character_in_the_sender_is_refused() -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        compose(_message(), from_addr="Shop\x00 <orders@shop.example>", message_id=MESSAGE_ID)
    assert caught.value.code == "invalid-message"
    assert "From" in str(caught.value)


def test_a_reply_to_is_set_and_checked_like_every_header() -> None:
    mime, _ = compose(
        _message(), from_addr=FROM, message_id=MESSAGE_ID, reply_to="help@shop.example"
    )
    assert mime["Reply-To"] == "help@shop.example"
    assert "Reply-To" not in compose(_message(), from_addr=FROM, message_id=MESSAGE_ID)[0]
    with pytest.raises(PermanentDeliveryError) as caught:
        compose(_message(), from_addr=FROM, message_id=MESSAGE_ID, reply_to="a@b.example\r\nX: y")
    assert caught.value.code == "invalid-message" and "Reply-To" in str(caught.value)


BOUNDARY = re.compile(rb"={15}\d{19}==(\.\d+)?")
DATE = re.compile(rb"^Date: [^\r\n]*\r\n", re.MULTILINE)


def _as_the_standard_library_would(monkeypatch: pytest.MonkeyPatch) -> None:
    """compose() with none of its savings: the default policy, every header parsed per
    message, the boundary left to the generator (what it did before they were made)."""
    monkeypatch.setattr(email_mime, "POLICY", email.policy.default)
    monkeypatch.setattr(email_mime, "_parsed", lambda _name, value: value)
    monkeypatch.setattr(email_mime, "_boundary", lambda *_bodies: None)


def _wire(message: OutboundMessage, from_addr: str, *, utf8: bool, cte_type: str) -> bytes | str:
    """What aiosmtplib would send, with the random boundary and the clock taken out, or
    the error code the message is refused with."""
    try:
        mime, _ = compose(message, from_addr=from_addr, message_id=MESSAGE_ID)
    except PermanentDeliveryError as exc:
        return exc.code
    flat = flatten_message(mime, utf8=utf8, cte_type=cte_type)
    return DATE.sub(b"", BOUNDARY.sub(b"BOUNDARY", flat))


# any text, with more of what takes the library's harder paths: non-ASCII, long lines,
# what looks like a boundary, encoded words, line breaks and controls
PIECES = [*"aé€漢 \n\t\r=?-<>@\"',;:.\x00\x85\u2028", "=" * 15, "--", "=?utf-8?q?x?="]
TEXT = (
    st.lists(st.sampled_from(PIECES), max_size=120).map("".join)
    | st.text(alphabet="aé漢 ", min_size=60, max_size=1100)  # one long line
    | st.text(max_size=100)
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    subject=TEXT,
    text=TEXT,
    html=st.none() | TEXT,
    to=st.sampled_from(["ada@example.org", "Zoé <zoe@example.fr>", "a@b", "no address", "x\x00@y"]),
    from_addr=st.sampled_from([FROM, "orders@shop.example", "Boutique Zoé <z@shop.fr>", "x\x7f@y"]),
    locale=st.sampled_from(["en_GB", "fr", "fr_FR", "zh_Hant_TW"]),
    utf8=st.booleans(),
    cte_type=st.sampled_from(["8bit", "7bit"]),
)
def test_the_bytes_sent_are_those_the_standard_library_composes(
    monkeypatch: pytest.MonkeyPatch,
    subject: str,
    text: str,
    html: str | None,
    to: str,
    from_addr: str,
    locale: str,
    utf8: bool,
    cte_type: str,
) -> None:
    message = _message(subject=subject, text=text, html=html, to=to, locale=locale)
    fast = _wire(message, from_addr, utf8=utf8, cte_type=cte_type)
    with monkeypatch.context() as plain:
        _as_the_standard_library_would(plain)
        reference = _wire(message, from_addr, utf8=utf8, cte_type=cte_type)
    assert fast == reference


def test_a_boundary_is_never_one_a_body_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = iter(["0" * 19, "0" * 19, "1" * 19])
    monkeypatch.setattr(email_mime.secrets, "randbits", lambda _bits: int(next(taken)))
    held = f"{'=' * 15}{'0' * 19}=="
    message = _message(text=f"quoting --{held}\n", html="<p>hi</p>")
    mime, _ = compose(message, from_addr=FROM, message_id=MESSAGE_ID)
    assert mime.get_boundary() == f"{'=' * 15}{'1' * 19}=="


def test_a_header_class_mapped_later_is_used() -> None:
    registry = email_mime.HeaderClasses()
    assert issubclass(registry["X-Custom"], UnstructuredHeader)  # kept from here on

    class Shouting(UnstructuredHeader):
        @classmethod
        def parse(cls, value: str, kwds: dict[str, Any]) -> None:
            super().parse(value.upper(), kwds)

    registry.map_to_type("X-Custom", Shouting)
    assert registry("X-Custom", "quiet") == "QUIET"
