"""The channels notifier sends on: registered by name here, and only here.

Each name is a module, ``notifier/channels/<name>.py``, whose ``PLUGIN`` declares
everything else about the channel (its settings, limits, template parts, render check,
how it picks the customer's address, whether receipts follow). The names live with the
contract because customers opt into channels by name (``customer.channels``), and the
ledger, the API, the metrics and the dispatch subjects (``notify.<channel>``) label
everything with them; adding a channel is its module, its templates and one name below.

The pure stages (rules, rendering, drafting) are handed :class:`ChannelSpec`s by the
composition root; they never import the channel modules, which talk to providers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from notifier.contracts.events import Customer
    from notifier.contracts.stores import Store

#: the channels a customer is told on, in the order the README lists them
CUSTOMER_CHANNELS: tuple[str, ...] = ("email", "sms", "push", "inapp")
#: the channel of partner deliveries: the event as JSON to the endpoints operators name;
#: customers never choose it, and its bodies are not templates
PARTNER_CHANNEL = "webhook"


def channel_names() -> tuple[str, ...]:
    """Every registered channel name: what a ``channel`` parameter may say."""
    return (*CUSTOMER_CHANNELS, PARTNER_CHANNEL)


#: (subject or title, text) of a rendering → what makes it unsendable on the channel, or None
RenderCheck = Callable[[str | None, str], str | None]
#: the customer's address on a channel, or None when they gave none
RecipientPicker = Callable[["Customer"], str | None]
#: which partner endpoints want a transition: (source, state) → endpoint names
PartnerRoutes = Callable[[str, str], Sequence[str]]


@dataclass(frozen=True, slots=True)
class SenderAddress:
    """Who a message comes from, as its ledger row keeps it and its channel sends it:
    an email's ``From`` and ``Reply-To``, an SMS's sender. None: the channel's own
    (``NOTIFIER_SMTP_FROM``, ``NOTIFIER_TWILIO_FROM``)."""

    sender: str | None = None
    reply_to: str | None = None


#: a store → who a message on the channel comes from (the channel's rule: an SMS sender
#: only where its provider lets one be chosen)
SenderPicker = Callable[["Store"], SenderAddress]


@dataclass(frozen=True, slots=True)
class TemplateParts:
    """Which template files fill a rendered message: ``<channel>.<part>.j2`` each.

    ``subject`` is one line (an email subject, a push title); ``html`` an alternative body.
    """

    text: str
    subject: str | None = None
    html: str | None = None

    @property
    def files(self) -> tuple[str, ...]:
        """The parts in the order they are compiled and reported: subject, text, html."""
        return tuple(p for p in (self.subject, self.text, self.html) if p is not None)


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """What the pure stages know of a channel; declared by its module's ``PLUGIN``."""

    name: str
    #: the template files a message on this channel is rendered from; None for a channel
    #: whose bodies are not templates (the partner channel)
    parts: TemplateParts | None = None
    #: how the channel picks the customer's address; None: customers are not told on it
    recipient: RecipientPicker | None = None
    #: what a customer without an address lacks, for the ledger: "customer has no <contact>"
    contact: str = ""
    #: every customer has an address on it (the in-app feed): in a fallback chain, the
    #: channels after it would never be tried
    reaches_everyone: bool = False
    #: a ``normal``/``low`` message on it waits out the customer's quiet hours (SMS, push)
    quiet_hours: bool = False

    @property
    def for_customers(self) -> bool:
        """Whether customers are told on this channel (rules may name it)."""
        return self.recipient is not None
