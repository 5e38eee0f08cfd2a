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

Cost: composing and flattening a message was the largest piece of a send (profiled,
docs/performance.md). The message is still built by the standard library, byte for
byte as before (a test compares them), with three savings: :data:`POLICY` builds each
header class once, the headers that repeat from message to message (From,
Content-Language) are parsed once, and the boundary is chosen without a regular
expression (:func:`_boundary`).
"""

from __future__ import annotations

import functools
import re
import secrets
from datetime import UTC, datetime
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy, default
from email.utils import format_datetime, getaddresses

from notifier.channels.base import OutboundMessage
from notifier.errors import PermanentDeliveryError

#: what never belongs in a header value: C0 controls (TAB too), DEL, C1 controls and the
#: Unicode line and paragraph separators, as the event contract defines them
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MESSAGE_ID_SAFE = re.compile(r"[A-Za-z0-9_-]")


class HeaderClasses(HeaderRegistry):
    """The standard header factory, but each header's class is built once.

    ``HeaderRegistry.__getitem__`` builds a new class with ``type()`` for every header
    of every message (Lib/email/headerregistry.py, Python 3.11-3.13): a sixth of the
    time composing took, and thousands of classes a second for the garbage collector.
    The classes it builds for one name are interchangeable, so one is kept per name.
    """

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        header_class = self._classes.get(key)
        if header_class is None:
            header_class = self._classes[key] = super().__getitem__(name)
        return header_class

    def map_to_type(self, name: str, cls: type[BaseHeader]) -> None:
        """As the standard one; a class kept for that name is dropped."""
        self._classes.pop(name.lower(), None)
        super().map_to_type(name, cls)


class OneLineHeader(UnstructuredHeader):
    """A header written on one line whatever its length (up to RFC 5322's 998).

    The one-click unsubscribe headers (RFC 8058) hold a long URL: the standard folder
    would break ``List-Unsubscribe:`` from its value, and some mail clients then miss
    the link. Their values are ASCII, checked by :func:`_set` like every header."""

    def fold(self, *, policy: Policy) -> str:
        """``Name: value`` and the policy's line ending, never folded."""
        name: str = getattr(self, "name")  # noqa: B009 (set by BaseHeader, which is mixed in)
        return f"{name}: {self}{policy.linesep}"


#: the headers :class:`OneLineHeader` writes
ONE_LINE_HEADERS = ("List-Unsubscribe", "List-Unsubscribe-Post")


def _header_classes() -> HeaderClasses:
    classes = HeaderClasses()
    for name in ONE_LINE_HEADERS:
        classes.map_to_type(name.lower(), OneLineHeader)  # type: ignore[arg-type]
    return classes


#: ``email.policy.default`` (what ``EmailMessage()`` uses) with :class:`HeaderClasses`
POLICY = default.clone(header_factory=_header_classes())


def compose(
    message: OutboundMessage, *, from_addr: str, message_id: str, reply_to: str | None = None
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
    mime = EmailMessage(policy=POLICY)
    _set(mime, "From", _parsed("From", from_addr))
    _set(mime, "To", message.to)
    if reply_to is not None:
        _set(mime, "Reply-To", _parsed("Reply-To", reply_to))
    _set(mime, "Subject", message.subject)
    _set(mime, "Date", format_datetime(datetime.now(UTC)))
    _set(mime, "Message-ID", message_id)
    if message.unsubscribe_url is not None:
        # an alert: one click in the mail client opts the customer out (RFC 8058)
        if not message.unsubscribe_url.isascii():
            raise PermanentDeliveryError(
                "cannot build the email: the List-Unsubscribe link is not ASCII",
                code="invalid-message",
            )
        _set(mime, "List-Unsubscribe", f"<{message.unsubscribe_url}>")
        _set(mime, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    mime.set_content(message.text, charset="utf-8")
    if message.html is not None:
        mime.make_alternative(boundary=_boundary(message.text, message.html))
        mime.add_alternative(message.html, subtype="html", charset="utf-8")
    # After the bodies: set_content and add_alternative move or drop Content-* headers.
    _set(mime, "Content-Language", _parsed("Content-Language", message.locale.replace("_", "-")))
    return mime, addresses[0][1]


def _boundary(*bodies: str) -> str:
    """A MIME boundary in the generator's own shape that no body holds.

    Left to the generator, every message compiles a regular expression of its own
    random boundary to search the bodies with (a tenth of composing); a substring test
    is as safe, since a body can only break the message if it holds the boundary.
    """
    while True:
        boundary = f"{'=' * 15}{secrets.randbits(63):019d}=="
        if not any(boundary in body for body in bodies):
            return boundary


def message_id(notification_id: str, domain: str) -> str:
    """``<notification-id@domain>``: the same for every attempt at one notification, so
    a message the pool's retry delivered twice is recognisably the same message."""
    return f"<{_message_id_local_part(notification_id)}@{domain}>"


@functools.lru_cache(maxsize=64)
def _parsed(name: str, value: str) -> str:
    """A header that repeats across messages (the sender, a locale), parsed once and
    shared: header objects are immutable, and setting one stores it as it is. A value
    the policy cannot parse comes back as it is, for :func:`_set` to refuse."""
    if CONTROL.search(value):
        return value
    try:
        header: str = POLICY.header_factory(name, value)
    except ValueError:
        return value
    return header


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
