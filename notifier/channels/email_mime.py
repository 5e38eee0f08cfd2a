"""The email itself: one rendered notification composed as a MIME message.

Kept apart from ``channels/email.py`` (the SMTP pool and conversation) because what a
message says and how it travels change for different reasons: a header or a body part
is added here without reading any connection handling, and the pool changes without
touching composition.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses

from notifier.channels.base import OutboundMessage
from notifier.errors import PermanentDeliveryError

_MESSAGE_ID_SAFE = re.compile(r"[A-Za-z0-9_-]")


def compose(
    message: OutboundMessage, *, from_addr: str, message_id: str
) -> tuple[EmailMessage, str]:
    """The MIME message for ``message`` and the one address it goes to.

    Raises ``PermanentDeliveryError`` (no retry changes the message): ``no-subject``,
    ``invalid-address`` when ``to`` is not exactly one address, ``invalid-message``
    when a header cannot be set.
    """
    if message.subject is None:
        raise PermanentDeliveryError(
            "an email needs a subject; none was rendered", code="no-subject"
        )
    addresses = getaddresses([message.to])
    one_address = len(addresses) == 1 and "@" in addresses[0][1]
    if not one_address or "\r" in message.to or "\n" in message.to:
        raise PermanentDeliveryError(
            "'to' is not exactly one email address", code="invalid-address"
        )
    mime = EmailMessage()
    try:
        mime["From"] = from_addr
        mime["To"] = message.to
        mime["Subject"] = message.subject
        mime["Date"] = format_datetime(datetime.now(UTC))
        mime["Message-ID"] = message_id
    except ValueError as exc:
        raise PermanentDeliveryError(
            f"cannot build the email: {exc}", code="invalid-message"
        ) from exc
    mime.set_content(message.text, charset="utf-8")
    if message.html is not None:
        mime.add_alternative(message.html, subtype="html", charset="utf-8")
    # After the bodies: set_content and add_alternative move or drop Content-* headers.
    mime["Content-Language"] = message.locale.replace("_", "-")
    return mime, addresses[0][1]


def message_id(notification_id: str, domain: str) -> str:
    """``<notification-id@domain>``: the same for every attempt at one notification, so
    a message the pool's retry delivered twice is recognisably the same message."""
    return f"<{_message_id_local_part(notification_id)}@{domain}>"


def _message_id_local_part(notification_id: str) -> str:
    """Keep ``[A-Za-z0-9_-]`` as is and write any other byte as ``=XX``: still one id per id."""
    return "".join(
        char if _MESSAGE_ID_SAFE.fullmatch(char) else "".join(f"={b:02X}" for b in char.encode())
        for char in notification_id
    )
