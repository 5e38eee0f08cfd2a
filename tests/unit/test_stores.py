"""The stores file: a good one loads, each bad value stops start-up with a line naming the
store and the field (never the value), and each event finds its store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from notifier.app import build_service
from notifier.config import load_settings
from notifier.contracts.events import OrderEvent
from notifier.contracts.stores import StoreBook, load_stores
from notifier.errors import ConfigError

ACME: dict[str, Any] = {
    "name": "Acme Outdoor",
    "email_from": "Acme Outdoor <orders@acme.example>",
    "reply_to": "help@acme.example",
    "sms_sender": "ACME",
    "logo_url": "https://acme.example/logo.png",
    "brand_color": "#0a7d4f",
    "support_email": "help@acme.example",
    "support_phone": "+14155550100",
    "website": "https://acme.example",
}
LUNE = {"name": "Maison Lune", "email_from": "commandes@lune.example", "sms_sender": "+33612345678"}


def write(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "stores.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def event(source: str = "web", **attributes: Any) -> OrderEvent:
    return OrderEvent.model_validate(
        {
            "event_id": "e1",
            "order_id": "o1",
            "source": source,
            "state": "placed",
            "occurred_at": "2026-11-20T10:00:00+00:00",
            "customer": {"id": "c1"},
            "attributes": attributes,
        }
    )


def test_a_good_file_loads_every_field(tmp_path: Path) -> None:
    book = load_stores(write(tmp_path, {"stores": {"acme": ACME, "lune": LUNE}, "default": "acme"}))
    assert book.stores["acme"].model_dump() == ACME
    assert book.stores["lune"].reply_to is None and book.stores["lune"].logo_url is None
    assert book.default == "acme"


def test_no_file_is_no_store() -> None:
    book = load_stores(None)
    assert book.view(event()) is None and book.for_event(event()) is None


@pytest.mark.parametrize(
    ("attributes", "source", "expected"),
    [
        ({"store_id": "lune"}, "acme", "lune"),  # store_id first
        ({}, "lune", "lune"),  # else the source
        ({"store_id": "unknown"}, "lune", "lune"),  # an unknown store_id: the source
        ({}, "web", "acme"),  # else the default
        ({"store_id": 7}, "web", "acme"),  # not a name
    ],
)
def test_an_event_finds_its_store(
    tmp_path: Path, attributes: dict[str, Any], source: str, expected: str
) -> None:
    book = load_stores(write(tmp_path, {"stores": {"acme": ACME, "lune": LUNE}, "default": "acme"}))
    assert book.key_for(event(source, **attributes)) == expected
    view = book.view(event(source, **attributes))
    assert view is not None and view["name"] == book.stores[expected].name


def test_without_a_default_an_unmatched_event_has_no_store(tmp_path: Path) -> None:
    book = load_stores(write(tmp_path, {"stores": {"acme": ACME}}))
    assert book.view(event("web")) is None
    assert StoreBook().key_for(event("acme")) is None


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("email_from", "Acme <orders@>", "an address or Name <address>"),
        ("email_from", "not an address", "an address or Name <address>"),
        ("email_from", "Acme <orders@acme>", "not an email address"),
        ("email_from", "Acme <orders@acme.example>\r\nBcc: x@y.example", "control characters"),
        ("reply_to", "help at acme", "not an email address"),
        ("support_email", "help@", "not an email address"),
        ("support_phone", "555-0100", "E.164"),
        ("sms_sender", "ACME OUTDOOR SHOP", "alphanumeric sender ID"),
        ("sms_sender", "12345", "alphanumeric sender ID"),
        ("sms_sender", "+1", "E.164"),
        ("brand_color", "green", "hex colour"),
        ("brand_color", "#12345", "hex colour"),
        ("logo_url", "javascript:alert(1)", "http:// or https:// URL"),
        ("website", "acme.example", "http:// or https:// URL"),
        ("logo_url", 'https://acme.example/"onerror="x', "http:// or https:// URL"),
        ("logo_url", "data:text/html;base64,PHNjcmlwdD4=", "base64 PNG, GIF, JPEG, WebP or SVG"),
        ("logo_url", 'data:image/png;base64,AAA"onerror=x', "base64 PNG, GIF, JPEG, WebP or SVG"),
        ("name", "", "at least 1 character"),
        ("colour", "#fff", "Extra inputs are not permitted"),
    ],
)
def test_each_bad_value_names_the_store_and_the_field(
    tmp_path: Path, field: str, value: str, rule: str
) -> None:
    path = write(tmp_path, {"stores": {"acme": {**ACME, field: value}}})
    with pytest.raises(ConfigError) as caught:
        load_stores(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: store acme: {field}: "), message
    assert rule in message
    if len(value) > 3:
        assert value not in message  # the field is named, never the value


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"stores": {"acme": ACME}, "default": "other"}, "default names no store"),
        ({"stores": {"acme": {"email_from": "a@b.example"}}}, "store acme: name: Field required"),
        ({"stores": {"bad key!": ACME}}, "store key 'bad key!'"),
        ({"stores": {"acme": ACME}, "extra": 1}, "extra: Extra inputs"),
        ("stores: [unclosed", "not valid YAML"),
        ({}, "stores: Field required"),
    ],
)
def test_a_bad_file_says_where(tmp_path: Path, content: Any, expected: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        load_stores(write(tmp_path, content))
    assert expected in str(caught.value)


def test_a_bad_stores_file_stops_start_up(tmp_path: Path) -> None:
    path = write(tmp_path, {"stores": {"acme": {**ACME, "brand_color": "green"}}})
    settings = load_settings(
        environment="test",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}",
        stores_file=path,
    )
    with pytest.raises(ConfigError, match="store acme: brand_color: must be a hex colour"):
        build_service(settings)


def test_a_missing_stores_file_is_a_setting_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"NOTIFIER_STORES_FILE: .* is not a readable file"):
        load_settings(environment="test", stores_file=tmp_path / "nope.yaml")


def test_a_logo_may_be_inlined_as_a_data_image(tmp_path: Path) -> None:
    logo = "data:image/svg+xml;base64,PHN2Zy8+"
    book = load_stores(write(tmp_path, {"stores": {"acme": {**ACME, "logo_url": logo}}}))
    assert book.stores["acme"].logo_url == logo
