"""The email itself: one rendered notification composed as a MIME message.

Kept apart from ``channels/email.py`` (the SMTP pool and conversation) because what a
message says and how it travels change for different reasons: a header or a body part
is added here without reading any connection handling, and the pool changes without
touching composition.

Every header value is refused if it holds a control character (C0 including TAB,
DEL, C1, U+2028/U+2029). The event contract already refuses them in addresses and
strips them from free text, and rendering puts the subject on one line; this is the
second line of defence, at the last point before the bytes go out, against a header
injection through a template or a value that reached the message another way. The
error names the header, never its value (an address is personal data).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses

from notifier.channels.base import OutboundMessage
from notifier.errors import PermanentDeliveryError

#: what never belongs in a header value: C0 controls (TAB too), DEL, C1 controls and the
#: Unicode line and paragraph separators, as the event contract defines them
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MESSAGE_ID_SAFE = re.compile(r"[A-Za-z0-9_-]")


def compose(
    message: OutboundMessage, *, from_addr: str, message_id: str
) -> tuple[EmailMessage, str]:
    """The MIME message for ``message`` and the one address it goes to.

    Raises ``PermanentDeliveryError`` (no retry changes the message): ``no-subject``,
    ``invalid-address`` when ``to`` is not exactly one address or holds a control
    character, ``invalid-message`` when another header cannot be set.
    """
    if message.subject is None:
        raise PermanentDeliveryError(
            "an email needs a subject; none was rendered", code="no-subject"
        )
    addresses = getaddresses([message.to])
    one_address = len(addresses) == 1 and "@" in addresses[0][1]
    if not one_address or CONTROL.search(message.to):
        raise PermanentDeliveryError(
            "'to' is not exactly one email address", code="invalid-address"
        )
    mime = EmailMessage()
    _set(mime, "From", from_addr)
    _set(mime, "To", message.to)
    _set(mime, "Subject", message.subject)
    _set(mime, "Date", format_datetime(datetime.now(UTC)))
    _set(mime, "Message-ID", message_id)
    mime.set_content(message.text, charset="utf-8")
    if message.html is not None:
        mime.add_alternative(message.html, subtype="html", charset="utf-8")
    # After the bodies: set_content and add_alternative move or drop Content-* headers.
    _set(mime, "Content-Language", message.locale.replace("_", "-"))
    return mime, addresses[0][1]


def message_id(notification_id: str, domain: str) -> str:
    """``<notification-id@domain>``: the same for every attempt at one notification, so
    a message the pool's retry delivered twice is recognisably the same message."""
    return f"<{_message_id_local_part(notification_id)}@{domain}>"


def _set(mime: EmailMessage, name: str, value: str) -> None:
    """Set one header, or refuse the message naming the header (never the value)."""
    if CONTROL.search(value):
        raise PermanentDeliveryError(
            f"cannot build the email: the {name} header holds a control character",
            code="invalid-message",
        )
    try:
        mime[name] = value
    except ValueError as exc:
        raise PermanentDeliveryError(
            f"cannot build the email: {exc}", code="invalid-message"
        ) from exc


def _message_id_local_part(notification_id: str) -> str:
    """Keep ``[A-Za-z0-9_-]`` as is and write any other byte as ``=XX``: still one id per id."""
    return "".join(
        char if _MESSAGE_ID_SAFE.fullmatch(char) else "".join(f"={b:02X}" for b in char.encode())
        for char in notification_id
    )
