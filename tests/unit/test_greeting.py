"""Greetings use a first name when one can be derived, never the full name."""

from __future__ import annotations

from typing import Any

import pytest

from notifier.channels.registry import registered, template_parts
from notifier.config import default_templates_dir
from notifier.contracts.events import OrderEvent, OrderState
from notifier.core.greeting import first_name
from notifier.core.intents import template_context
from notifier.core.lifecycle import Transition
from notifier.rendering.templates import TemplateRenderer

TEMPLATES = (
    "order_confirmed",
    "shipped",
    "out_for_delivery",
    "delivered",
    "delivery_failed",
    "cancelled",
    "refunded",
    "on_hold",
    "correction",
)
SHIPMENT_STATES = {"shipped", "out_for_delivery", "delivered", "delivery_failed"}


@pytest.mark.parametrize(
    ("given_name", "name", "expected"),
    [
        (None, "Ada Lovelace", "Ada"),
        (None, "Ada King Lovelace", "Ada"),
        (None, "  Ada   Lovelace ", "Ada"),
        (None, "Jean-Pierre Dupont", "Jean-Pierre"),
        (None, "Dr. Ada Lovelace", "Ada"),
        (None, "Mrs Ada Lovelace", "Ada"),
        (None, "M. Jean Dupont", "Jean"),
        (None, "Mme Dupont", None),  # an honorific and a family name: no first name
        (None, "Prof Dr Grace Hopper", "Grace"),
        (None, "Lovelace, Ada", "Ada"),  # "Family, Given"
        (None, "Lovelace, Dr Ada", "Ada"),
        (None, "Lovelace,", None),
        (None, "Ada", None),  # one word: a first name, a family name or a shop?
        (None, "ACME", None),
        (None, "A. Lovelace", None),  # an initial is not a name to greet by
        (None, "", None),
        (None, None, None),
        ("Ada", "Augusta Ada King", "Ada"),  # given_name wins
        ("  Ada ", None, "Ada"),
        ("", "Ada Lovelace", "Ada"),  # an empty given_name is none
        ("Taro", "Yamada Taro", "Taro"),  # family name first: only given_name can say
    ],
)
def test_first_name_derivation(
    given_name: str | None, name: str | None, expected: str | None
) -> None:
    assert first_name(given_name, name) == expected


def context(template: str, customer: dict[str, Any], locale: str) -> dict[str, Any]:
    state = {"order_confirmed": "confirmed", "correction": "shipped"}.get(template, template)
    body: dict[str, Any] = {
        "event_id": "e1",
        "order_id": "A-1",
        "source": "web",
        "state": state,
        "occurred_at": "2026-11-20T10:00:00+00:00",
        "customer": {"id": "c1", "locale": locale, **customer},
        "reason": "Out of stock" if state in {"cancelled", "on_hold", "delivery_failed"} else None,
    }
    if state in SHIPMENT_STATES:
        body["shipment"] = {"id": "p1", "carrier": "DHL", "tracking_number": "JD1"}
    event = OrderEvent.model_validate(body)
    shipment = "p1" if state in SHIPMENT_STATES else None
    transition = Transition("e1", shipment, None, OrderState(state), state)
    values = template_context(event, transition)
    if template == "correction":
        values["correction"] = {
            "previous": {"template": "shipped", "state": "shipped", "subject": "On its way"},
            "current": {"template": "shipped", "state": "shipped"},
            "retracted": False,
            "changes": {"tracking_number": {"old": "JD0", "new": "JD1"}},
        }
    return values


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    return TemplateRenderer(default_templates_dir(), template_parts(registered()))


@pytest.mark.parametrize("locale", ["en", "fr"])
@pytest.mark.parametrize("template", TEMPLATES)
def test_no_template_greets_by_the_full_name(
    renderer: TemplateRenderer, template: str, locale: str
) -> None:
    hello = {"en": "Hi", "fr": "Bonjour"}[locale]
    for customer, greeting in [
        ({"name": "Ada Lovelace"}, f"{hello} Ada,"),
        ({"name": "Ada Lovelace", "given_name": "Augusta"}, f"{hello} Augusta,"),
        ({"name": "Lovelace"}, f"{hello},"),  # one word: greeted neutrally
    ]:
        values = context(template, customer, locale)
        for channel in ("email", "sms", "push"):
            message = renderer.render(template, channel, locale, values)
            for part in filter(None, (message.subject, message.text, message.html)):
                assert "Lovelace" not in part, (template, channel, part)
        email = renderer.render(template, "email", locale, values)
        assert email.text.startswith(greeting), email.text
        assert f"<p>{greeting}</p>" in (email.html or "")
