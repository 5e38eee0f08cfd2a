"""What the order-status page shows, from an order's stored history (pure), and the
page's own templates rendered from it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifier.core.tracking import OrderRecord, StoredEvent, order_page, page_language
from notifier.rendering.pages import PageRenderer

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CUSTOMER = {"id": "c1", "email": "ada@example.com", "locale": "en-GB", "timezone": "UTC"}


def stored(
    seq: int,
    state: str,
    shipment: dict[str, Any] | None = None,
    *,
    minute: int | None = None,
    outcome: str = "applied",
    retracted: bool = False,
    customer: dict[str, Any] | None = None,
    attributes: dict[str, Any] | None = None,
    **extra: Any,
) -> StoredEvent:
    body = {
        "event_id": f"e{seq}",
        "order_id": "A-1",
        "source": "web",
        "state": state,
        "customer": customer or CUSTOMER,
        "shipment": shipment,
        "attributes": {"store_name": "Tea & Co"} if attributes is None else attributes,
        **extra,
    }
    return StoredEvent(
        seq=seq,
        state=state,
        shipment_id=shipment["id"] if shipment else None,
        occurred_at=T0 + timedelta(minutes=seq if minute is None else minute),
        outcome=outcome,
        retracted=retracted,
        payload=json.dumps(body),
    )


def record(*events: StoredEvent, state: str = "in_transit", **shipments: str) -> OrderRecord:
    return OrderRecord("A-1", state, "processing", dict(shipments), list(events))


def test_parcels_keep_each_detail_from_the_latest_event_that_gave_it() -> None:
    page = order_page(
        record(
            stored(1, "placed"),
            stored(2, "shipped", {"id": "p1", "carrier": "DHL", "tracking_number": "X1"}),
            stored(3, "in_transit", {"id": "p1", "estimated_delivery": "2026-11-22T16:00:00Z"}),
            stored(4, "shipped", {"id": "p2", "tracking_url": "javascript:alert(1)"}),
            p1="in_transit",
            p2="shipped",
        )
    )
    assert page is not None
    first, second = page["shipments"]
    assert first == {
        "id": "p1",
        "state": "in_transit",
        "carrier": "DHL",
        "tracking_number": "X1",
        "tracking_url": None,
        "estimated_delivery": "2026-11-22T16:00:00+00:00",
    }
    assert second["tracking_url"] is None  # only a web address becomes a link


def test_the_timeline_is_applied_events_newest_first_without_retracted_ones() -> None:
    page = order_page(
        record(
            stored(1, "placed"),
            stored(2, "confirmed"),
            stored(3, "shipped", {"id": "p1"}, minute=30),
            stored(4, "shipped", {"id": "p2"}, minute=20),
            stored(5, "in_transit", {"id": "p1"}, minute=10, outcome="stale"),
            stored(6, "on_hold", retracted=True),
            p1="shipped",
            p2="shipped",
        )
    )
    assert page is not None
    assert [(t["state"], t["parcel"]) for t in page["timeline"]] == [
        ("shipped", 1),
        ("shipped", 2),
        ("confirmed", None),
        ("placed", None),
    ]


@pytest.mark.parametrize(
    ("locale", "language"),
    [("fr-CA", "fr"), ("FR", "fr"), ("en-US", "en"), ("de-DE", "en"), ("", "en"), (None, "en")],
)
def test_the_page_language_falls_back_to_english(locale: str | None, language: str) -> None:
    assert page_language(locale) == language


def test_an_erased_or_wholly_retracted_order_shows_nothing() -> None:
    erased = {"id": "c1", "name": None, "email": None, "phone": None, "push_tokens": []}
    assert order_page(record(stored(1, "placed", customer=erased, attributes={}))) is None
    assert order_page(record(stored(1, "placed", retracted=True))) is None
    assert order_page(record(stored(1, "placed"))) is not None


def test_the_shop_contact_comes_from_the_store_or_else_the_store_name() -> None:
    history = record(stored(1, "placed"))
    fallback = order_page(history)
    assert fallback is not None and fallback["store"]["name"] == "Tea & Co"
    assert fallback["store"]["support_email"] is None

    seen: list[tuple[str, Any]] = []

    def store_for(source: str, attributes: Any) -> dict[str, Any]:
        seen.append((source, attributes))
        return {
            "name": "Acme",
            "support_email": "help@acme.example",
            "website": "javascript:alert(1)",
            "brand_color": "red;}body{display:none",
            "logo_url": "https://cdn.example.com/logo.png",
        }

    page = order_page(history, store_for=store_for)
    assert page is not None
    assert seen == [("web", {"store_name": "Tea & Co"})]
    assert page["store"] == {
        "name": "Acme",
        "support_email": "help@acme.example",
        "support_phone": None,
        "website": None,
        "brand_color": None,
    }


def test_the_page_escapes_what_events_say_and_shows_it_in_the_customers_zone() -> None:
    paris = {**CUSTOMER, "locale": "fr-FR", "timezone": "Europe/Paris"}
    page = order_page(
        record(
            stored(1, "placed", customer=paris, attributes={"store_name": "<b>Tea</b>"}),
            stored(
                2,
                "delivery_failed",
                {"id": "p1", "carrier": "<script>", "estimated_delivery": "2026-11-22T23:30:00Z"},
                customer=paris,
                reason="Nobody <home>",
            ),
            p1="delivery_failed",
        ),
        store_for=lambda _s, _a: {"name": "Acme", "brand_color": "#0a7d4f"},
    )
    assert page is not None
    html = PageRenderer().render("track", {**page, "nonce": "n0nce"})
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Nobody &lt;home&gt;" in html
    assert "--brand: #0a7d4f;" in html
    assert '<html lang="fr">' in html
    # 23:30 UTC is the next day in Paris
    assert "lundi 23 novembre 2026" in html
    assert "Échec de livraison" in html
    assert '<style nonce="n0nce">' in html
