"""The peer the email channel is compared with: Apprise's email plugin, as fast as it goes.

Apprise is what many self-hosted services use to send notifications, so "how many
emails a second would Apprise deliver to the same SMTP server" is the yardstick for
ours. Three things in Apprise shape the measurement:

- Every plugin waits ``request_rate_per_sec`` (5.5 s for ``NotifyBase``) between two
  sends. That is a politeness delay for remote services, not a cost of sending, so it
  is set to 0 on *our* plugin instance; the class, and every other user of it in this
  process, keeps its own value.
- It is synchronous and opens one SMTP connection per ``notify()``, building a new
  ``ssl.create_default_context()`` (the whole system CA bundle, ~28 ms here) even for
  a plain connection: most of its time per message (~480/s for bare smtplib with a
  connection each, ~30/s for Apprise, 2 CPUs, Nov 2026). The loop of
  ``notify()`` calls runs in a worker thread so the SMTP server, when it lives on the
  caller's event loop (the bench's :class:`~notifier.devtools.mailcatcher.MailCatcher`),
  can answer.
- ``smtplib`` names the client in EHLO from ``socket.getfqdn()``, a lookup of this
  machine's own name (``/etc/hosts`` answers it here). The server itself must be a
  loopback IP literal: a name would be resolved, and the bench never leaves the machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import apprise

#: a shipping confirmation, the most common order email; the body is about 1 KB
_ORDER_SUBJECT = "Your order #{order} has shipped"
_ORDER_BODY = """Hello Alex,

Good news: your order #{order} is on its way. It left our warehouse this morning and
the carrier expects to deliver it within two to three working days.

Order summary
  1 x Merino wool crew-neck sweater, navy, size M          EUR 89.00
  2 x Organic cotton socks, grey, size 42-45                EUR 24.00
  1 x Leather care balm, 100 ml                             EUR 12.50
  Shipping (standard, tracked)                              EUR  4.90
  Total paid                                                EUR 130.40

Carrier: DHL Parcel, tracking number {tracking}
Track your parcel: https://shop.example.com/orders/{order}/tracking

Delivery address
  Alex Example, Hauptstrasse 12, 10115 Berlin, Germany

If you are not at home, the carrier will leave a notice and try again the next working
day. You can change the delivery day or choose a pick-up point from the tracking page.

Questions about your order? Reply to this email or visit https://shop.example.com/help.

Thank you for shopping with us,
The Example Shop team
"""


@dataclass(frozen=True, slots=True)
class PeerResult:
    """How a peer did: ``messages`` accepted by the server in ``seconds`` (first send to
    last return), ``per_s`` of them a second, and ``errors`` sends that failed."""

    messages: int
    seconds: float
    per_s: float
    errors: int


def order_email(index: int) -> tuple[str, str]:
    """The subject and (~1 KB) plain-text body of benchmark email ``index``."""
    order = 100_000 + index
    tracking = f"00340434{index:010d}"
    return (
        _ORDER_SUBJECT.format(order=order),
        _ORDER_BODY.format(order=order, tracking=tracking),
    )


def apprise_email_url(*, smtp_host: str, smtp_port: int, to_addr: str, from_addr: str) -> str:
    """The ``mailto://`` URL for a plain SMTP server (no TLS, no AUTH) on loopback.

    Raises ``ValueError`` unless ``smtp_host`` is an IPv4 loopback literal such as
    ``127.0.0.1``: the peer must never resolve a name or reach another machine.
    """
    try:
        address = ipaddress.ip_address(smtp_host)
    except ValueError:
        raise ValueError(f"smtp_host must be a loopback IP literal, not {smtp_host!r}") from None
    if address.version != 4 or not address.is_loopback:
        raise ValueError(f"smtp_host must be an IPv4 loopback address, not {smtp_host!r}")
    query = urlencode({"mode": "insecure", "from": from_addr, "to": to_addr})
    return f"mailto://{address}:{smtp_port}/?{query}"


def _email_plugin(url: str) -> apprise.Apprise:
    # storage_mode="memory": Apprise's persistent store would otherwise write to disk
    asset = apprise.AppriseAsset(storage_mode="memory")
    plugin = apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=False)
    if plugin is None:
        raise ValueError(f"Apprise did not accept the email URL {url!r}")
    # An instance attribute: only this plugin stops waiting between sends.
    plugin.request_rate_per_sec = 0.0
    sender = apprise.Apprise(asset=asset)
    sender.add(plugin)
    return sender


def _send_all(sender: apprise.Apprise, count: int) -> PeerResult:
    emails = [order_email(index) for index in range(count)]
    delivered = 0
    started = time.perf_counter()
    for subject, body in emails:
        if sender.notify(body=body, title=subject, body_format=apprise.NotifyFormat.TEXT):
            delivered += 1
    seconds = time.perf_counter() - started
    return PeerResult(
        messages=delivered,
        seconds=seconds,
        per_s=delivered / seconds if seconds > 0 else 0.0,
        errors=count - delivered,
    )


async def apprise_email_rate(
    count: int,
    *,
    smtp_host: str,
    smtp_port: int,
    to_addr: str = "bench@example.com",
    from_addr: str = "orders@example.com",
) -> PeerResult:
    """Send ``count`` emails through Apprise to ``smtp_host:smtp_port``, one after another
    as fast as Apprise can, and report the rate.

    Runs Apprise in a worker thread, so an SMTP server on the calling event loop keeps
    answering. A failed send is counted in ``errors``, not raised.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    url = apprise_email_url(
        smtp_host=smtp_host, smtp_port=smtp_port, to_addr=to_addr, from_addr=from_addr
    )
    sender = _email_plugin(url)
    return await asyncio.to_thread(_send_all, sender, count)
