"""``/dev/outbox`` as a page: every email the catcher holds, each drawn in a sandboxed
iframe as a mail client would, then the SMS and pushes the Twilio and FCM fakes
received and the newest in-app feed items the service keeps, newest first.

An email's HTML goes into ``srcdoc`` under ``sandbox=""``: it renders, but it runs no
script, submits no form and cannot reach this page (its origin is opaque), so a
template that misbehaves shows as it would in a mailbox and harms nothing here.
Each in-app item names its customer with a link to that customer's live feed page,
``/dev/feed/{customer_id}`` (:mod:`notifier.devtools.feedpage`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from notifier.contracts.feed import FeedItem
from notifier.devtools.mailcatcher import CaughtMessage


def _fields(pairs: Iterable[tuple[str, object]]) -> str:
    rows = "".join(
        f"<dt>{escape(name)}</dt><dd>{escape(str(value))}</dd>"
        for name, value in pairs
        if value not in (None, "")
    )
    return f"<dl>{rows}</dl>"


def _email(message: CaughtMessage) -> str:
    shown_from = message.headers.get("From") or message.mail_from
    head = _fields(
        [
            ("To", ", ".join(message.rcpt_tos)),
            ("From", shown_from),
            ("Reply-To", message.headers.get("Reply-To")),
            ("Received", message.received_at),
            ("Language", message.headers.get("Content-Language")),
        ]
    )
    if message.html is not None:
        # escape() quotes `"` too, so the whole document sits safely in the attribute
        body = (
            f'<iframe sandbox="" srcdoc="{escape(message.html)}" '
            f'title="{escape(message.subject)}" loading="lazy"></iframe>'
        )
    else:
        body = f"<pre>{escape(message.text)}</pre>"
    return (
        f'<article class="email" data-message-id="{escape(message.message_id)}">'
        f"<h3>{escape(message.subject) or '(no subject)'}</h3>{head}{body}</article>"
    )


def _sms(entry: Mapping[str, Any]) -> str:
    names = (("To", "to"), ("From", "from"), ("Received", "received_at"), ("Status", "status"))
    head = _fields((label, entry.get(key)) for label, key in names)
    return f'<article class="sms">{head}<pre>{escape(str(entry.get("body", "")))}</pre></article>'


def _push(entry: Mapping[str, Any]) -> str:
    token = str(entry.get("token", ""))
    names = (("Title", entry.get("title")), ("Device token", token))
    head = _fields((*names, ("Received", entry.get("received_at"))))
    data = entry.get("data") or {}
    details = _fields(sorted(data.items())) if data else ""
    body = escape(str(entry.get("body") or ""))
    return f'<article class="push">{head}<p>{body}</p>{details}</article>'


def _feed_link(customer_id: str) -> str:
    href = f"/dev/feed/{quote(customer_id, safe='')}"
    return f'<a href="{escape(href)}">{escape(customer_id)}</a>'


def _inapp(item: FeedItem) -> str:
    head = _fields(
        [
            ("Order", item.order_id),
            ("Template", item.template),
            ("Created", item.created_at.isoformat()),
            ("Read", "yes" if item.read else "no"),
            ("Link", item.link),
        ]
    )
    return (
        f'<article class="inapp" data-item-id="{escape(item.id)}">'
        f"<h3>{escape(item.title)}</h3><p>Customer {_feed_link(item.customer_id)}</p>"
        f"{head}<pre>{escape(item.body)}</pre></article>"
    )


def _section(kind: str, title: str, items: Sequence[str], empty: str) -> str:
    inner = "".join(items) if items else f'<p class="empty">{escape(empty)}</p>'
    return f'<section id="{kind}"><h2>{escape(title)} ({len(items)})</h2>{inner}</section>'


def outbox_body(
    emails: Sequence[CaughtMessage],
    sms: Sequence[Mapping[str, Any]],
    pushes: Sequence[Mapping[str, Any]],
    *,
    inapp: Sequence[FeedItem] = (),
    feed_customers: Sequence[str] = (),
) -> str:
    """The page's body: emails, SMS, pushes and in-app items newest first, and links to
    the live feeds of ``feed_customers``. ``sms`` comes oldest first, as the Twilio fake
    keeps it; ``pushes`` and ``inapp`` newest first, as the FCM fake and the store list
    them."""
    hint = "Nothing caught yet: run `notifier emit --demo` in another shell, then reload."
    feeds = "".join(f"<li>{_feed_link(customer)}</li>" for customer in feed_customers)
    return (
        '<p class="note">What customers received, newest first. JSON: '
        '<a href="/dev/outbox?format=json">emails</a>, '
        '<a href="/dev/outbox/sms">SMS</a>, <a href="/dev/outbox/push">push</a>.</p>'
        + _section("emails", "Emails", [_email(m) for m in reversed(emails)], hint)
        + _section("sms", "SMS", [_sms(e) for e in reversed(sms)], hint)
        + _section("push", "Push notifications", [_push(e) for e in pushes], hint)
        + _section("inapp", "In-app feed items", [_inapp(i) for i in inapp], hint)
        + (f'<section id="feeds"><h2>In-app feeds (live)</h2><ul>{feeds}</ul></section>'
           if feeds else "")
    )  # fmt: skip
