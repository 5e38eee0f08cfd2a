"""Composing an email refuses a control character in any header value: a second line of
defence behind the event contract, which strips them from free text before rendering."""

from __future__ import annotations

from typing import Any

import pytest

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
