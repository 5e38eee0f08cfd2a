"""Phone-number and SMS-length rules: tables of texts at the segment boundaries."""

from __future__ import annotations

import pytest

from notifier.channels.gsm import Encoding, SmsLength, count_segments, is_e164, sms_length

G, U = Encoding.GSM7, Encoding.UCS2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SmsLength(G, 0, 0)),
        ("a", SmsLength(G, 1, 1)),
        ("a" * 160, SmsLength(G, 160, 1)),
        ("a" * 161, SmsLength(G, 161, 2)),
        ("a" * 306, SmsLength(G, 306, 2)),
        ("a" * 307, SmsLength(G, 307, 3)),
        ("Your order #123 shipped! Track: https://ex.co/t?id=9&x=1", SmsLength(G, 56, 1)),
        # extension table characters are an escape plus a septet
        ("€", SmsLength(G, 2, 1)),
        ("[]{}", SmsLength(G, 8, 1)),
        ("^|~\\", SmsLength(G, 8, 1)),
        ("€" * 80, SmsLength(G, 160, 1)),
        ("€" * 81, SmsLength(G, 162, 2)),
        ("a" * 159 + "€", SmsLength(G, 161, 2)),
        # an escape sequence never straddles two parts: naive ceil(306/153) would say 2
        ("a" * 152 + "€" + "a" * 152, SmsLength(G, 306, 3)),
        # é, è, Ç, ñ, ü, ß and Greek capitals are in GSM-7 itself
        ("é" * 160, SmsLength(G, 160, 1)),
        ("Café Müller, Straße, Ñoño, ΔΩ", SmsLength(G, 29, 1)),
        ("Ñandú", SmsLength(U, 5, 1)),  # ú is not
        ("\n\r", SmsLength(G, 2, 1)),
        # ...but ç, á, ê, curly quotes and Cyrillic are not
        ("ç", SmsLength(U, 1, 1)),
        ("Ça va très bien, merci á", SmsLength(U, 24, 1)),
        ("It\u2019s here", SmsLength(U, 9, 1)),  # a curly apostrophe
        ("ж" * 70, SmsLength(U, 70, 1)),
        ("ж" * 71, SmsLength(U, 71, 2)),
        ("ж" * 134, SmsLength(U, 134, 2)),
        ("ж" * 135, SmsLength(U, 135, 3)),
        ("é" * 69 + "ж", SmsLength(U, 70, 1)),
        # emoji are two UTF-16 code units
        ("😀", SmsLength(U, 2, 1)),
        ("😀" * 35, SmsLength(U, 70, 1)),
        ("😀" * 36, SmsLength(U, 72, 2)),
        ("a" * 69 + "😀", SmsLength(U, 71, 2)),
        ("😀" * 66, SmsLength(U, 132, 2)),
        # a surrogate pair never straddles two parts: 33 emoji fill a 67-unit part
        ("😀" * 67, SmsLength(U, 134, 3)),
        ("ж" * 66 + "😀" + "ж" * 66, SmsLength(U, 134, 3)),
        # the extension table costs two septets, but a UCS-2 text counts € once
        ("€😀", SmsLength(U, 3, 1)),
    ],
    ids=lambda v: repr(v)[:30] if isinstance(v, str) else None,
)
def test_sms_length(text: str, expected: SmsLength) -> None:
    assert sms_length(text) == expected
    assert count_segments(text) == expected.segments


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("+15005550006", True),
        ("+4915112345678", True),
        ("+12", True),
        ("+123456789012345", True),  # 15 digits, the most E.164 allows
        ("+1234567890123456", False),
        ("+1", False),
        ("15005550006", False),
        ("+015005550006", False),
        ("+1 500 555 0006", False),
        ("+1-500-555-0006", False),
        ("+1500555000a", False),
        ("+15005550006\n", False),
        ("+١٢٣٤٥٦", False),  # Arabic-Indic digits match \d, not E.164
        ("", False),
    ],
)
def test_is_e164(number: str, valid: bool) -> None:
    assert is_e164(number) is valid
