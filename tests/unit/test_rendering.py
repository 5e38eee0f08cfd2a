"""The rendering stage against the shipped templates and small template sets in tmp_path."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from notifier.channels.registry import registered, template_parts
from notifier.config import default_templates_dir
from notifier.errors import ConfigError, TemplateError, TemplateNotFound
from notifier.rendering import RenderedMessage, TemplateRenderer
from notifier.rendering.filters import date_filter, datetime_filter, money_filter

TEMPLATES_DIR = default_templates_dir()
SHIPPED = (
    "order_confirmed",
    "shipped",
    "out_for_delivery",
    "delivered",
    "delivery_failed",
    "cancelled",
    "refunded",
    "on_hold",
    "correction",
    "processing_stuck",
    "parcel_silent",
    "promise_missed",
    "new_delivery_date",
    "predicted_late",
    "returned",
)
CHANNELS = ("email", "sms", "push")
#: the registered channels' template files
PARTS = template_parts(registered())
GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = set("^{}\\[~]|€")
#: a store as the stores file gives it to templates, every field set
STORE = {
    "name": "Maison Lune",
    "email_from": "Maison Lune <commandes@maisonlune.example>",
    "reply_to": "aide@maisonlune.example",
    "sms_sender": "MaisonLune",
    "logo_url": "https://maisonlune.example/logo.png",
    "brand_color": "#0a7d4f",
    "support_email": "aide@maisonlune.example",
    "support_phone": "+33612345678",
    "website": "https://maisonlune.example",
}


#: a tracking-page link as ``core.links.TrackLinks`` makes one
TRACK_LINK = "https://notifier.example.com/track/A-10023?t=6a1b2c3d.AbCdEfGhIjKlMnOpQrStUv"


def realistic(template: str) -> dict[str, Any]:
    return {
        "order": {
            "id": "A-10023",
            "source": "shop",
            "state": "delivered" if template == "delivered" else template,
            "attributes": {
                "items": [
                    {"name": "Blue mug", "quantity": 2, "price": 12.5},
                    {"name": "Loose-leaf tea", "quantity": 1, "price": "24.90"},
                ],
                "total": 49.9,
                "currency": "EUR",
                "store_name": "Maison Lune",
            },
        },
        "customer": {
            "id": "c-1",
            "name": "Ana Martin",
            "first_name": "Ana",
            "locale": "fr-CA",
            "timezone": "Europe/Paris",
        },
        "event": {
            "event_id": "e-1",
            "state": template,
            "occurred_at": "2024-05-03T14:05:00+00:00",
            "reason": "Nobody was home to sign for the parcel",
            "reason_code": None,
        },
        "shipment": {
            "id": "s-1",
            "carrier": "Colissimo",
            "tracking_number": "6A12345678901",
            "tracking_url": "https://track.example.com/6A12345678901",
            "estimated_delivery": "2024-05-06T18:00:00+02:00",
            "state": "shipped",
        },
        "correction": (
            {
                "previous": {
                    "template": "delivered",
                    "state": "delivered",
                    "subject": "Your order A-10023 has been delivered",
                    "sent_at": "2024-05-03T14:06:00+00:00",
                    "channel": "email",
                },
                "current": {"state": "out_for_delivery"},
                "retracted": True,
                "changes": {"state": {"old": "delivered", "new": "out_for_delivery"}},
            }
            if template == "correction"
            else None
        ),
        "links": {"track": TRACK_LINK},
        "store": STORE,
    }


def minimal(template: str) -> dict[str, Any]:
    return {
        "order": {"id": "A-1", "source": "shop", "state": "processing", "attributes": {}},
        "customer": {
            "id": "c-1",
            "name": None,
            "first_name": None,
            "locale": "en",
            "timezone": "UTC",
        },
        "event": {
            "event_id": "e-1",
            "state": template,
            "occurred_at": "2024-05-03T14:05:00Z",
            "reason": None,
            "reason_code": None,
        },
        "shipment": None,
        "correction": (
            {"previous": {}, "current": {}, "retracted": False}
            if template == "correction"
            else None
        ),
        "links": {"track": None},
        "store": None,
    }


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    return TemplateRenderer(TEMPLATES_DIR, PARTS)


def make_set(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def sms_only(root: Path, text: str, **renderer_args: Any) -> TemplateRenderer:
    make_set(root, {"t/en/sms.text.j2": text})
    return TemplateRenderer(root, PARTS, **renderer_args)


def is_gsm(text: str) -> bool:
    return all(ch in GSM_BASIC or ch in GSM_EXTENDED for ch in text)


def gsm_length(text: str) -> int:
    return sum(2 if ch in GSM_EXTENDED else 1 for ch in text)


def unlinked(template: str) -> dict[str, Any]:
    """The realistic context of a service without the order-status page configured."""
    return {**realistic(template), "links": {"track": None}}


#: SMS that tell a reason or correct a message: with the tracking-page link they may
#: take two segments; every other one fits one
LONG_SMS = {"cancelled", "on_hold", "delivery_failed", "correction"}


@pytest.mark.parametrize(
    "context_of", [realistic, unlinked, minimal], ids=["realistic", "unlinked", "minimal"]
)
@pytest.mark.parametrize("locale", ["en", "fr"])
@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("template", SHIPPED)
def test_every_shipped_template_renders(
    renderer: TemplateRenderer, template: str, channel: str, locale: str, context_of: Any
) -> None:
    message = renderer.render(template, channel, locale, context_of(template))

    assert isinstance(message, RenderedMessage)
    assert (message.template, message.channel, message.locale) == (template, channel, locale)
    assert len(message.version) == 12
    int(message.version, 16)
    parts = [message.subject, message.text, message.html]
    for part in filter(None, parts):
        assert "None" not in part
        assert "Undefined" not in part
    assert message.text
    if channel == "email":
        assert message.subject and "\n" not in message.subject
        assert message.html is not None
        assert f'<html lang="{locale}">' in message.html
    elif channel == "push":
        assert message.subject and message.html is None
    else:
        assert message.subject is None and message.html is None
        assert is_gsm(message.text), message.text
        linked = context_of is realistic
        limit = 306 if linked and template in LONG_SMS else 160
        assert gsm_length(message.text) <= limit, message.text
        # one URL at most: the order-status page's, when there is one
        assert message.text.count("https://") <= 1, message.text


def test_names_lists_templates_but_not_layouts(renderer: TemplateRenderer) -> None:
    assert renderer.names() == frozenset(SHIPPED)


@pytest.mark.parametrize(
    ("template", "channel", "expected"),
    [
        ("shipped", "email", True),
        ("shipped", "sms", True),
        ("shipped", "fax", False),
        ("nope", "email", False),
        ("_layouts", "email", False),
    ],
)
def test_has(renderer: TemplateRenderer, template: str, channel: str, expected: bool) -> None:
    assert renderer.has(template, channel) is expected


@pytest.mark.parametrize(
    ("requested", "used"),
    [
        ("fr-CA", "fr"),
        ("fr-ca", "fr"),
        ("fr_CA", "fr"),
        ("FR", "fr"),
        ("de", "en"),
        ("de-AT", "en"),
        (None, "en"),
        ("", "en"),
    ],
)
def test_locale_fallback(renderer: TemplateRenderer, requested: str | None, used: str) -> None:
    assert renderer.render("shipped", "push", requested, minimal("shipped")).locale == used


def test_region_folder_matches_case_insensitively(tmp_path: Path) -> None:
    make_set(tmp_path, {"t/en/sms.text.j2": "en", "t/fr-CA/sms.text.j2": "fr-CA"})
    message = TemplateRenderer(tmp_path, PARTS).render("t", "sms", "fr-ca", {})
    assert (message.locale, message.text) == ("fr-CA", "fr-CA")


def test_dates_and_money_follow_the_customer_locale_within_the_language(
    renderer: TemplateRenderer,
) -> None:
    context = realistic("order_confirmed")
    fr_ca = renderer.render("order_confirmed", "email", "fr-CA", context)
    de = renderer.render("order_confirmed", "email", "de", context)
    assert "49,90\xa0€" in fr_ca.text
    assert "€49.90" in de.text


def test_delivered_says_whether_it_is_the_whole_order(renderer: TemplateRenderer) -> None:
    context = realistic("delivered")
    whole = renderer.render("delivered", "sms", "en", context).text
    context["order"]["state"] = "shipped"
    part = renderer.render("delivered", "sms", "en", context).text
    assert "Your order A-10023 has been delivered" in whole
    assert "Part of your order" in part


def test_correction_states_what_is_true_now(renderer: TemplateRenderer) -> None:
    context = realistic("correction")
    retracted = renderer.render("correction", "email", "en", context)
    context["correction"]["retracted"] = False
    corrected = renderer.render("correction", "email", "en", context)
    assert "sent in error" in retracted.text
    assert "Current status: Out for delivery" in retracted.text
    assert "sent in error" not in corrected.text
    assert retracted.subject != corrected.subject


def test_html_is_escaped_and_text_is_not(renderer: TemplateRenderer) -> None:
    context = realistic("shipped")
    context["customer"]["first_name"] = "<script>alert(1)</script>"
    message = renderer.render("shipped", "email", "en", context)
    assert message.html is not None
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.html
    assert "<script>" not in message.html
    assert "Hi <script>alert(1)</script>," in message.text


def test_subject_is_stripped_and_collapsed_to_one_line(tmp_path: Path) -> None:
    make_set(
        tmp_path,
        {
            "t/en/email.subject.j2": "\n  Your\n order   {{ n }}\n",
            "t/en/email.text.j2": "\n body \n",
            "t/en/email.html.j2": "<p>{{ n }}</p>",
        },
    )
    message = TemplateRenderer(tmp_path, PARTS).render("t", "email", "en", {"n": "<1>"})
    assert (message.subject, message.text, message.html) == (
        "Your order <1>",
        "body",
        "<p>&lt;1&gt;</p>",
    )


def test_missing_variable_is_a_template_error_naming_file_and_variable(tmp_path: Path) -> None:
    renderer = sms_only(tmp_path, "line one\n{{ customer.nickname }}")
    with pytest.raises(TemplateError) as caught:
        renderer.render("t", "sms", "en", {"customer": {}})
    assert not isinstance(caught.value, TemplateNotFound)
    assert "t/en/sms.text.j2:2" in str(caught.value)
    assert "nickname" in str(caught.value)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ order.items.append(1) }}",
        "{% set x = order.items.clear() %}",
    ],
)
def test_sandbox_blocks_escapes(tmp_path: Path, source: str) -> None:
    with pytest.raises(TemplateError, match=r"t/en/sms\.text\.j2:1"):
        sms_only(tmp_path, source).render("t", "sms", "en", {"order": {"items": []}})


@pytest.mark.parametrize(
    "source",
    ["{{ 'a' * 10**9 }}", "{{ 10**9 * 'a' }}", "{{ [0] * 10**9 }}", "{{ 2 ** (10 ** 9) }}"],
)
def test_huge_repetition_and_powers_are_refused_quickly(tmp_path: Path, source: str) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateError, match="SecurityError"):
        sms_only(tmp_path, source).render("t", "sms", "en", {})
    assert time.perf_counter() - started < 1.0


def test_small_repetition_still_works(tmp_path: Path) -> None:
    assert sms_only(tmp_path, "{{ '-' * 3 }}{{ 2 ** 10 }}").render("t", "sms", "en", {}).text == (
        "---1024"
    )


def test_output_longer_than_the_limit_is_refused(tmp_path: Path) -> None:
    renderer = sms_only(
        tmp_path, "{% for i in range(100000) %}xxxxxxxxxx{% endfor %}", max_output_chars=1000
    )
    with pytest.raises(TemplateError, match="longer than 1,000 characters"):
        renderer.render("t", "sms", "en", {})


@pytest.mark.parametrize(
    ("source", "detail"),
    [
        ("{% if %}", "t/en/sms.text.j2:1: syntax error"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ '2024-05-03T10:00:00Z'|datetime('UTC', 'en', 5) }}", "format must be"),
        ("{{ '2024-05-03'|date('UTC', 'en', '') }}", "format must be"),
        ("{% extends '_layouts/missing.j2' %}", "missing.j2"),
    ],
)
def test_jinja_and_filter_failures_become_template_errors(
    tmp_path: Path, source: str, detail: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        sms_only(tmp_path, source).render("t", "sms", "en", {})
    assert detail in str(caught.value)


@pytest.mark.parametrize(
    ("template", "channel", "locale"),
    [("nope", "email", "en"), ("shipped", "fax", "en"), ("_layouts", "email", None)],
)
def test_unknown_template_or_channel_is_not_found(
    renderer: TemplateRenderer, template: str, channel: str, locale: str | None
) -> None:
    with pytest.raises(TemplateNotFound, match=template):
        renderer.render(template, channel, locale, minimal("shipped"))


def test_channel_missing_in_every_candidate_locale_is_not_found(tmp_path: Path) -> None:
    renderer = sms_only(tmp_path, "hi")
    with pytest.raises(TemplateNotFound) as caught:
        renderer.render("t", "push", "fr-CA", {})
    assert all(word in str(caught.value) for word in ("'t'", "push", "fr-CA"))


def test_incomplete_email_folder_is_an_error_not_a_silent_fallback(tmp_path: Path) -> None:
    make_set(tmp_path, {"t/en/email.subject.j2": "s", "t/en/email.text.j2": "t"})
    with pytest.raises(TemplateError, match=r"missing t/en/email\.html\.j2"):
        TemplateRenderer(tmp_path, PARTS).render("t", "email", "en", {})


def test_a_broken_template_fails_the_same_way_every_time(tmp_path: Path) -> None:
    renderer = sms_only(tmp_path, "{% if %}")
    messages = set()
    for _ in range(2):
        with pytest.raises(TemplateError) as caught:
            renderer.render("t", "sms", "en", {})
        messages.add(str(caught.value))
    assert len(messages) == 1


def test_a_missing_templates_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        TemplateRenderer(tmp_path / "nowhere", PARTS)


def test_version_follows_the_files_used(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, root)
    context = realistic("shipped")
    before = TemplateRenderer(root, PARTS)
    email_v1 = before.render("shipped", "email", "en", context).version
    sms_v1 = before.render("shipped", "sms", "en", context).version
    again = TemplateRenderer(root, PARTS)
    assert again.render("shipped", "email", "en", context).version == email_v1
    assert before.render("shipped", "email", "fr", context).version != email_v1

    layout = root / "_layouts" / "email.html.j2"
    layout.write_text(layout.read_text(encoding="utf-8") + "<!-- v2 -->\n", encoding="utf-8")
    after = TemplateRenderer(root, PARTS)
    assert after.render("shipped", "email", "en", context).version != email_v1
    assert after.render("shipped", "sms", "en", context).version == sms_v1

    (root / "shipped" / "en" / "sms.text.j2").write_text("Shipped {{ order.id }}", encoding="utf-8")
    before.reload()
    edited = before.render("shipped", "sms", "en", context)
    assert (edited.text, edited.version != sms_v1) == ("Shipped A-10023", True)


def test_a_running_renderer_keeps_its_snapshot_between_checks(tmp_path: Path) -> None:
    renderer = sms_only(tmp_path, "one")
    first = renderer.render("t", "sms", "en", {})
    (tmp_path / "t" / "en" / "sms.text.j2").write_text("two, longer", encoding="utf-8")
    assert renderer.render("t", "sms", "en", {}) == first


def test_a_running_renderer_notices_edits_and_new_locales(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TemplateRenderer, "reload_check_interval_s", 0.0)
    renderer = sms_only(tmp_path, "one")
    first = renderer.render("t", "sms", "fr", {})
    (tmp_path / "t" / "en" / "sms.text.j2").write_text("two, longer", encoding="utf-8")
    make_set(tmp_path, {"t/fr/sms.text.j2": "trois"})
    assert (first.locale, first.text) == ("en", "one")
    assert renderer.render("t", "sms", "en", {}).text == "two, longer"
    assert renderer.render("t", "sms", "fr", {}).text == "trois"


def test_filters_format_in_the_customer_zone_and_locale() -> None:
    assert datetime_filter("2024-05-03T14:05:00Z", "Europe/Paris", "fr") == "3 mai 2024, 16:05:00"
    assert datetime_filter("2024-05-03T14:05:00", "UTC", "en-GB", "short") == "03/05/2024, 14:05"
    assert date_filter("2024-05-03T23:30:00+00:00", "Asia/Tokyo", "en") == "May 4, 2024"
    assert date_filter("2024-05-03", "Pacific/Honolulu", "fr-CA") == "3 mai 2024"
    assert money_filter("24.90", "eur", "fr-CA") == "24,90\xa0€"
    assert money_filter(3, "USD", "xx-YY") == "$3.00"


@pytest.mark.parametrize(
    ("call", "shown"),
    [
        # the shop's own text stands in for a value the filter cannot read...
        (lambda: money_filter("abc", "EUR", "en"), "abc"),
        (lambda: money_filter("1e999", "EUR", "en"), "1e999"),
        (lambda: datetime_filter("soon", "UTC", "en"), "soon"),
        (lambda: date_filter("2024-13-45", "UTC", "en"), "2024-13-45"),
        # ...what is not text is left out...
        (lambda: money_filter(True, "EUR", "en"), ""),
        (lambda: money_filter(None, "EUR", "en"), ""),
        (lambda: money_filter(float("inf"), "EUR", "en"), ""),
        (lambda: money_filter({"amount": 5}, "EUR", "en"), ""),
        (lambda: datetime_filter(12, "UTC", "en"), ""),
        # ...a zone past the calendar's end shows the value as sent...
        (
            lambda: date_filter("9999-12-31T23:59:59-14:00", "Pacific/Kiritimati", "en"),
            "9999-12-31T23:59:59-14:00",
        ),
        # ...and a currency, zone or locale that is not usable falls back
        (lambda: money_filter("12", None, "de"), "12,00"),
        (lambda: money_filter("12", "€€", "en"), "12.00"),
        (lambda: datetime_filter("2024-05-03T10:00Z", 5, "en"), "May 3, 2024, 10:00:00\u202fAM"),
        (
            lambda: datetime_filter("2024-05-03T10:00Z", "Mars/Base", None),
            "May 3, 2024, 10:00:00\u202fAM",
        ),
    ],
)
def test_filters_never_fail_on_the_data_they_format(call: Any, shown: str) -> None:
    assert call() == shown


@pytest.mark.parametrize(
    "source",
    [
        "{{ d.a }}|{{ d.get('a') }}|{{ d.get('zz', 'none') }}",
        "{{ d['items'] }}|{{ d.items is callable }}|{{ d.keys()|list|length }}",
        "{{ d.nested.b }}|{{ d.nested['b'] }}|{{ range(3)|list }}",
        "{% if d.a %}yes{% endif %}|{{ d.missing is defined }}",
    ],
)
def test_attribute_lookup_on_dicts_answers_as_stock_jinja(tmp_path: Path, source: str) -> None:
    # the sandbox's shortcut for plain dicts must give Jinja's own answer
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    context = {"d": {"a": 1, "items": 5, "nested": {"b": "x"}}}
    stock = ImmutableSandboxedEnvironment(undefined=StrictUndefined).from_string(source)
    rendered = sms_only(tmp_path, source).render("t", "sms", "en", context).text
    assert rendered == stock.render(context).strip()


def test_a_missing_dict_key_is_still_a_template_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="missing"):
        sms_only(tmp_path, "{{ d.missing }}").render("t", "sms", "en", {"d": {}})


def test_a_zone_name_too_long_for_a_file_name_falls_back_to_utc() -> None:
    assert datetime_filter("2024-05-03T10:00Z", "x" * 300, "en") == "May 3, 2024, 10:00:00\u202fAM"


@pytest.mark.parametrize(
    ("locale", "questions"),
    [("en", "Questions about your order?"), ("fr", "Une question sur votre commande ?")],
)
def test_the_store_brands_the_email_in_each_language(
    renderer: TemplateRenderer, locale: str, questions: str
) -> None:
    branded = renderer.render("delivered", "email", locale, realistic("delivered"))
    html = branded.html or ""
    assert '<img src="https://maisonlune.example/logo.png" alt="Maison Lune"' in html
    assert "border-top:4px solid #0a7d4f" in html and "background: #0a7d4f" in html
    assert questions in html
    assert '<a href="mailto:aide@maisonlune.example">aide@maisonlune.example</a>' in html
    assert '<a href="tel:+33612345678">+33612345678</a>' in html
    assert '<a href="https://maisonlune.example">Maison Lune</a>' in html
    assert branded.text.endswith(
        f"--\nMaison Lune\n{questions} aide@maisonlune.example · +33612345678\n"
        "https://maisonlune.example"
    )
    plain = realistic("delivered") | {"store": None}
    unbranded = renderer.render("delivered", "email", locale, plain)
    assert "<img" not in (unbranded.html or "") and "#0a7d4f" not in (unbranded.html or "")
    assert "Maison Lune" in (unbranded.html or "")  # attributes.store_name, as before
    assert "--" not in unbranded.text
