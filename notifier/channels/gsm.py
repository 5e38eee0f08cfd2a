"""Phone-number and SMS-length rules, pure: no I/O, no provider.

An SMS is billed per segment, and the segment size depends on the encoding the whole
text needs. One character outside the GSM-7 alphabet (an emoji, a curly quote) turns
the message into UCS-2 and more than halves what fits in a segment, so the channel
counts segments before it pays for them.

    encoding   one segment   per part when concatenated   unit
    GSM-7      160           153                          septet (extension chars: 2)
    UCS-2       70            67                          UTF-16 code unit (emoji: 2)

A concatenated message spends 7 septets / 3 code units of each part on the header
that numbers the parts. A character never straddles two parts (an escape and its
extension character, or a surrogate pair, travel together), so the parts are packed
greedily rather than by dividing the total.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

#: ``+``, a country code that does not start with 0, at most 15 digits in all (ITU E.164)
E164 = re.compile(r"\+[1-9][0-9]{1,14}")

#: the GSM 03.38 default alphabet, one septet each (ESC, 0x1B, is not a character)
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: the extension table: sent as ESC + one septet, so each costs two
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


class Encoding(StrEnum):
    """How the handset receives the text."""

    #: the 7-bit GSM alphabet; what plain English and most Western European text needs
    GSM7 = "gsm7"
    #: 16-bit, for anything else (emoji, Cyrillic, CJK, curly quotes)
    UCS2 = "ucs2"


@dataclass(frozen=True, slots=True)
class SegmentLimits:
    """Units that fit in one SMS alone, and in each part of a concatenated one."""

    single: int
    per_part: int


LIMITS: dict[Encoding, SegmentLimits] = {
    Encoding.GSM7: SegmentLimits(single=160, per_part=153),
    Encoding.UCS2: SegmentLimits(single=70, per_part=67),
}


@dataclass(frozen=True, slots=True)
class SmsLength:
    """What a text costs: its encoding, its size in that encoding's units, its segments."""

    encoding: Encoding
    units: int
    segments: int


def is_e164(number: str) -> bool:
    """True for ``+`` and 2-15 digits; Twilio refuses anything else for SMS (21211)."""
    return E164.fullmatch(number) is not None


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM-7 alphabet or its extension table."""
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def encoding_for(text: str) -> Encoding:
    """GSM-7 when the whole text fits it, otherwise UCS-2 (one character decides)."""
    return Encoding.GSM7 if is_gsm7(text) else Encoding.UCS2


def sms_length(text: str) -> SmsLength:
    """Encoding, units and segments of ``text``; an empty text is 0 segments."""
    encoding = encoding_for(text)
    sizes = [_unit_cost(char, encoding) for char in text]
    units = sum(sizes)
    limits = LIMITS[encoding]
    if units == 0:
        return SmsLength(encoding, 0, 0)
    if units <= limits.single:
        return SmsLength(encoding, units, 1)
    return SmsLength(encoding, units, _pack(sizes, limits.per_part))


def count_segments(text: str) -> int:
    """How many SMS segments ``text`` is billed as."""
    return sms_length(text).segments


def _unit_cost(char: str, encoding: Encoding) -> int:
    if encoding is Encoding.GSM7:
        return 2 if char in GSM7_EXTENSION else 1
    # Python strings hold code points; the handset counts UTF-16 code units.
    return 2 if ord(char) > 0xFFFF else 1


def _pack(sizes: list[int], per_part: int) -> int:
    """Parts needed when no character may be split across two of them."""
    parts, used = 1, 0
    for size in sizes:
        if used + size > per_part:
            parts, used = parts + 1, 0
        used += size
    return parts
