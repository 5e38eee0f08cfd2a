"""predicted_late through the real service: it learns a carrier's transit times from
the deliveries it stored, warns about a parcel slower than the carrier's 90th
percentile before its promise, and stays silent about one that is not."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from notifier.devtools.mailcatcher import MailCatcher
from notifier.devtools.natsserver import NatsServer
from tests.integration.helpers import event, order, publish, running, settings_for
from tests.support import wait_until

RULES = """version: 1
rules:
  - name: shipped
    when: {state: [shipped]}
    template: shipped
    channels: [email]
  - name: predicted_late
    when: {predicted_late: {percentile: 90}}
    template: predicted_late
    channels: [email]
    category: alerts
"""
WARNING = "Your order {} may be late"


def at(when: datetime, body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "occurred_at": when.isoformat()}


def history(now: datetime, carrier: str, hours: list[float]) -> list[dict[str, Any]]:
    """Delivered parcels of ``carrier`` over the past weeks, ``hours`` on the way each;
    their customer has no contact, so they tell nobody."""
    bodies: list[dict[str, Any]] = []
    for n, took in enumerate(hours):
        oid = f"H-{carrier}-{n}"
        shipped = now - timedelta(days=20, hours=n)
        parcel = {"id": "p1", "carrier": carrier}
        for state, when in (
            ("placed", shipped - timedelta(hours=1)),
            ("shipped", shipped),
            ("delivered", shipped + timedelta(hours=took)),
        ):
            body = event(oid, state, 0, email=None, shipment=parcel if state != "placed" else None)
            bodies.append(at(when, body))
    return bodies


async def test_a_parcel_slower_than_its_carriers_90th_percentile_is_warned_about_once(
    nats: NatsServer, mail: MailCatcher, database_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = settings_for(
        nats.url,
        database_url,
        mail.port,
        rules_file=rules,
        timer_poll_s=0.2,
        prediction_refresh_s=0.5,
        prediction_min_sample=30,
    )
    promise = (now + timedelta(days=2)).isoformat()

    def parcel(oid: str) -> dict[str, Any]:
        return {"id": "p1", "carrier": "UPS", "estimated_delivery": promise}

    async with running(settings) as (_service, client):
        # 40 UPS deliveries: 36 within two days, 4 in five: the 90th percentile is 48 h
        await publish(nats.url, *history(now, "UPS", [24.0] * 20 + [48.0] * 16 + [120.0] * 4))
        await publish(
            nats.url,
            # on its way for 60 hours, promised in two days: slower than 90% of UPS parcels
            at(now - timedelta(hours=61), event("SLOW", "placed", 0)),
            at(now - timedelta(hours=60), event("SLOW", "shipped", 1, shipment=parcel("SLOW"))),
            # on its way for 30 hours: as fast as most
            at(now - timedelta(hours=31), event("FAST", "placed", 0)),
            at(now - timedelta(hours=30), event("FAST", "shipped", 1, shipment=parcel("FAST"))),
        )
        await wait_until(
            lambda: Counter(m.subject for m in mail.messages())[WARNING.format("SLOW")] == 1,
            timeout=30,
        )
        fast = await order(client, "FAST")
        assert fast is not None
        assert [n["template"] for n in fast["notifications"]] == ["shipped"]
        slow = await order(client, "SLOW")
        assert slow is not None
        warned = [n for n in slow["notifications"] if n["template"] == "predicted_late"]
        assert [n["status"] for n in warned] == ["sent"]
    got = Counter(m.subject for m in mail.messages())
    assert got[WARNING.format("SLOW")] == 1
    assert got[WARNING.format("FAST")] == 0
    # the history's customers have no address: nobody was told about them
    assert not any(m.subject.startswith("Your order H-") for m in mail.messages())
