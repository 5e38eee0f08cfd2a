"""Take personal data out of error text before it is kept.

Error text outlives the message it is about: it goes into the ledger's ``last_error``,
into dead letters and their ``Notifier-Detail`` header, and from there into every
tool that shows them, beyond the reach of erasure. Provider and library errors quote
what they were given (``'jane.doe@example' is not a valid email``, ``The 'To' number
+14155550123 is not valid``), so whatever an adapter already redacted, the text is
passed through here once more where it is stored: the contacts we know of are
replaced exactly, and anything shaped like an email address, a phone number or a
device token is replaced by its kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: an address with or without a top-level domain (``jane.doe@example`` too)
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*")
#: a push token or other credential: a long run without spaces (FCM tokens are ~150)
_TOKEN = re.compile(r"[A-Za-z0-9_\-:]{40,}")
#: an international number (E.164, possibly spaced), or a long bare run of digits
_PHONE = re.compile(r"\+\d[\d ().\-]{5,}\d|(?<![\w.])\d{9,}(?![\w.])")


def redact(text: str, known: Iterable[str | None] = ()) -> str:
    """``text`` with the ``known`` contacts and anything like a contact replaced.

    Kinds, not values, are left (``<email>``, ``<phone>``, ``<token>``), so the error
    still says what was wrong with what.
    """
    for value in sorted({v for v in known if v and len(v) >= 3}, key=len, reverse=True):
        text = text.replace(value, "<contact>")
    text = _EMAIL.sub("<email>", text)
    text = _TOKEN.sub("<token>", text)
    return _PHONE.sub("<phone>", text)
