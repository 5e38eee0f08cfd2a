"""Reason codes: translated in every shipped language, refused off their state's list,
and the free-text reason as the fallback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from notifier.channels.registry import registered, template_parts
from notifier.config import default_templates_dir
from notifier.contracts.events import OrderEvent, OrderState
from notifier.contracts.reasons import REASON_CODES
from notifier.core.intents import template_context
from notifier.core.lifecycle import Transition
from notifier.core.model import DeadLetter, IncomingEvent, RawMessage
from notifier.ingest.decode import decode
from notifier.rendering.templates import TemplateRenderer
from tests.unit.test_rendering import gsm_length, is_gsm

LANGUAGES = ("en", "fr")
CASES = [(state, code) for state, codes in REASON_CODES.items() for code in codes]
TEMPLATE = {"cancelled": "cancelled", "on_hold": "on_hold", "delivery_failed": "delivery_failed"}


def body(state: str, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "event_id": "e1",
        "order_id": "A-1",
        "source": "web",
        "state": state,
        "occurred_at": "2026-11-20T10:00:00+00:00",
        "customer": {"id": "c1", "name": "Ada Lovelace"},
    }
    if state == "delivery_failed":
        values["shipment"] = {"id": "p1"}
    values.update(extra)
    return values


def context(state: str, **extra: Any) -> dict[str, Any]:
    event = OrderEvent.model_validate(body(state, **extra))
    shipment = "p1" if event.is_shipment_event else None
    return template_context(event, Transition("e1", shipment, None, OrderState(state), state))


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    return TemplateRenderer(default_templates_dir(), template_parts(registered()))


def label(renderer: TemplateRenderer, state: str, code: str, locale: str) -> str:
    """The label as the email's text shows it, after "Reason: " / "Motif : "."""
    text = renderer.render(TEMPLATE[state], "email", locale, context(state, reason_code=code)).text
    prefix = {"en": "Reason: ", "fr": "Motif : "}[locale]
    (line,) = [line for line in text.splitlines() if line.startswith(prefix)]
    return line.removeprefix(prefix)


@pytest.mark.parametrize(("state", "code"), CASES)
def test_every_code_is_translated_in_every_language_and_channel(
    renderer: TemplateRenderer, state: str, code: str
) -> None:
    labels = {locale: label(renderer, state, code, locale) for locale in LANGUAGES}
    untranslated = code.replace("_", " ").capitalize()  # what the macro falls back to
    for locale, text in labels.items():
        assert text and text != untranslated, (locale, code)
        values = context(state, reason_code=code, reason="free text from the shop")
        for channel in ("email", "sms", "push"):
            message = renderer.render(TEMPLATE[state], channel, locale, values)
            parts = [p for p in (message.subject, message.text, message.html) if p]
            assert any(text[:40] in p for p in parts), (locale, channel, parts)
            assert not any("free text from the shop" in p for p in parts)  # the code wins
            if "_" in code:  # "refused", "weather" are words a label may use
                assert not any(code in p for p in parts)
            if channel == "sms":
                assert is_gsm(message.text) and gsm_length(message.text) <= 160, message.text
    assert labels["en"] != labels["fr"]


@pytest.mark.parametrize(
    ("state", "code", "locale", "expected"),
    [
        ("cancelled", "out_of_stock", "en", "An item is out of stock"),
        ("cancelled", "out_of_stock", "fr", "Un article est en rupture de stock"),
        ("on_hold", "customer_request", "en", "Paused at your request"),
        ("cancelled", "customer_request", "en", "Cancelled at your request"),
        ("delivery_failed", "recipient_absent", "fr", "Personne n'était présent pour le recevoir"),
    ],
)
def test_labels(
    renderer: TemplateRenderer, state: str, code: str, locale: str, expected: str
) -> None:
    assert label(renderer, state, code, locale) == expected


@pytest.mark.parametrize("state", list(REASON_CODES))
def test_the_free_text_reason_is_the_fallback(renderer: TemplateRenderer, state: str) -> None:
    values = context(state, reason="Le transporteur a perdu le colis")
    text = renderer.render(TEMPLATE[state], "email", "fr", values).text
    assert "Motif : Le transporteur a perdu le colis" in text


def test_html_shows_the_label_and_escapes_free_text(renderer: TemplateRenderer) -> None:
    values = context("cancelled", reason_code="out_of_stock")
    coded = renderer.render("cancelled", "email", "en", values)
    assert "<strong>Reason:</strong> An item is out of stock" in (coded.html or "")
    free = renderer.render("cancelled", "email", "en", context("cancelled", reason="<b>x</b>"))
    assert "&lt;b&gt;x&lt;/b&gt;" in (free.html or "")


def refused(state: str, **extra: Any) -> DeadLetter:
    message = RawMessage(json.dumps(body(state, **extra)).encode(), {}, "orders.state.web", 1)
    result = decode(message)
    assert isinstance(result, DeadLetter), result
    return result


def test_a_code_off_its_states_list_is_refused_naming_the_valid_codes() -> None:
    dead = refused("cancelled", reason_code="recipient_absent")
    assert dead.reason == "schema_violation"
    assert dead.detail == (
        "reason_code: not a reason code for cancelled; valid codes: "
        + ", ".join(REASON_CODES["cancelled"])
    )


def test_a_code_on_a_state_that_takes_none_is_refused() -> None:
    dead = refused("shipped", reason_code="damaged", shipment={"id": "p1"})
    assert dead.reason == "schema_violation"
    assert dead.detail == (
        "reason_code: state shipped takes no reason code (only cancelled, on_hold, "
        "delivery_failed do)"
    )


def test_a_malformed_code_is_refused() -> None:
    assert "reason_code" in refused("cancelled", reason_code="").detail
    assert "reason_code" in refused("cancelled", reason_code="x\u0000").detail


@pytest.mark.parametrize(("state", "code"), CASES)
def test_every_listed_code_is_accepted(state: str, code: str) -> None:
    message = RawMessage(json.dumps(body(state, reason_code=code)).encode(), {}, "s", 1)
    result = decode(message)
    assert isinstance(result, IncomingEvent)
    assert result.event.reason_code == code


def test_a_partner_body_carries_the_reason_code_only_when_the_event_has_one() -> None:
    from notifier.contracts.events import OrderEvent
    from notifier.core.intents import webhook_body
    from notifier.core.lifecycle import Transition
    from notifier.core.model import OrderState

    base = {
        "event_id": "e1",
        "order_id": "A-1",
        "source": "web",
        "state": "cancelled",
        "occurred_at": "2026-11-20T09:00:00+00:00",
        "customer": {"id": "c1"},
    }
    cancelled = Transition("e1", None, None, OrderState.CANCELLED, "cancelled")
    plain = webhook_body(OrderEvent.model_validate(base), cancelled, "n_1", "erp")
    coded = webhook_body(
        OrderEvent.model_validate({**base, "reason_code": "out_of_stock"}), cancelled, "n_1", "erp"
    )
    assert "reason_code" not in plain["event"]
    assert coded["event"]["reason_code"] == "out_of_stock"
    assert {k: v for k, v in coded["event"].items() if k != "reason_code"} == plain["event"]
