"""The developer tools: demo data, event files, a real nats-server, the publisher."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig

from notifier.contracts.events import OrderEvent, OrderState
from notifier.devtools.demo import PATTERNS, demo_events
from notifier.devtools.natsserver import NatsServer
from notifier.devtools.publisher import (
    STREAM,
    check_events,
    load_events,
    publish_events,
    subject_token,
)
from notifier.streams import StreamSettings
from tests.support import free_port, wait_until


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
async def client(nats_server: NatsServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


class TestDemoEvents:
    def test_every_event_validates_and_ids_are_unique(self) -> None:
        events = demo_events(7, run_id="r1")
        parsed = [OrderEvent.model_validate(event) for event in events]
        assert len({event.event_id for event in parsed}) == len(events)
        assert {event.order_id for event in parsed} == {f"DEMO-{1001 + n}-r1" for n in range(7)}

    def test_each_run_makes_new_orders(self) -> None:
        first, second = demo_events(3), demo_events(3)
        assert not {e["order_id"] for e in first} & {e["order_id"] for e in second}

    def test_lifecycles_cycle_through_the_patterns(self) -> None:
        events = [OrderEvent.model_validate(event) for event in demo_events(4, run_id="r")]
        for n in range(4):
            states = tuple(e.state for e in events if e.order_id == f"DEMO-{1001 + n}-r")
            assert states == PATTERNS[n % 3]
        assert PATTERNS[1][-1] is OrderState.CANCELLED

    def test_time_moves_forward_per_order(self) -> None:
        events = [OrderEvent.model_validate(event) for event in demo_events(3)]
        for order_id in {event.order_id for event in events}:
            times = [e.occurred_at for e in events if e.order_id == order_id]
            assert all(a < b for a, b in pairwise(times))

    def test_realistic_details(self) -> None:
        events = [OrderEvent.model_validate(event) for event in demo_events(3)]
        assert {e.customer.locale for e in events} == {"en-US", "fr-CA", "en-GB"}
        assert {e.source for e in events} == {"shopify", "web"}
        for event in events:
            assert str(event.customer.email).rsplit("@", 1)[1] in ("example.com", "example.org")
            assert event.customer.push_tokens
            assert set(event.attributes) >= {"items", "total", "currency", "store_name"}
            if event.is_shipment_event:
                assert event.shipment is not None
                assert event.shipment.tracking_url is not None
                assert event.shipment.tracking_url.startswith("https://track.example.com/")
            if event.state in (OrderState.CANCELLED, OrderState.DELIVERY_FAILED):
                assert event.reason

    def test_each_run_gets_fresh_ids_and_a_seed_fixes_the_rest(self) -> None:
        start = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
        first, second = demo_events(start=start), demo_events(start=start)
        assert not {e["event_id"] for e in first} & {e["event_id"] for e in second}
        assert demo_events(start=start, run_id="r1") == demo_events(start=start, run_id="r1")

    def test_rejects_a_naive_start(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            demo_events(start=datetime(2026, 11, 1, 9, 0))


class TestLoadEvents:
    def test_json_object_and_list(self, tmp_path: Path) -> None:
        one = tmp_path / "one.json"
        one.write_text(json.dumps({"event_id": "a"}))
        many = tmp_path / "many.json"
        many.write_text(json.dumps([{"event_id": "a"}, {"event_id": "b"}]))
        assert load_events(one) == [{"event_id": "a"}]
        assert load_events(many) == [{"event_id": "a"}, {"event_id": "b"}]

    def test_jsonl_skips_blank_lines_and_keeps_invalid_events(self, tmp_path: Path) -> None:
        path = tmp_path / "events.jsonl"
        path.write_text('{"event_id": "a"}\n\n   \n{"state": "nonsense"}\n')
        assert load_events(path) == [{"event_id": "a"}, {"state": "nonsense"}]

    @pytest.mark.parametrize(
        ("name", "text", "message"),
        [
            ("bad.jsonl", '{"a": 1}\n\n{"a": \n', "bad.jsonl:3: invalid JSON"),
            ("bad.jsonl", '{"a": 1}\n[1, 2]\n', "bad.jsonl:2: expected a JSON object, got list"),
            ("bad.json", '[\n  {"a": 1},\n  {"a": }\n]', "bad.json:3: invalid JSON"),
            ("bad.json", '[{"a": 1}, "b"]', "bad.json: item 2: expected a JSON object"),
            ("bad.csv", "a,b", "unsupported file type '.csv'"),
            ("empty.jsonl", "\n\n", "empty.jsonl: no events in the file"),
            ("empty.json", "[]", "empty.json: no events in the file"),
            ("deep.json", "[" * 100_000 + "]" * 100_000, "deep.json: nested too deeply"),
            ("deep.jsonl", "{}\n" + "[" * 100_000 + "]" * 100_000, "deep.jsonl:2: nested too"),
        ],
    )
    def test_errors_name_file_and_line(
        self, tmp_path: Path, name: str, text: str, message: str
    ) -> None:
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ValueError, match=message) as raised:
            load_events(path)
        assert str(raised.value).startswith(str(path))


class TestCheckEvents:
    def test_the_demo_passes(self) -> None:
        assert check_events(demo_events(3)) == []

    def test_each_reject_names_the_event_and_the_reason_the_service_would_give(self) -> None:
        good = demo_events(1)[0]
        events: list[dict[str, Any]] = [
            good,
            {**good, "event_id": "e-2", "state": "teleported"},
            {k: v for k, v in good.items() if k != "customer"},
            {"order_id": "o-1"},
            {**good, "event_id": "e-5", "when": datetime(2026, 1, 1, tzinfo=UTC)},
        ]
        rejects = check_events(events)
        assert rejects[0] == "event #2 ('e-2'): unknown_state: unknown state 'teleported'"
        assert rejects[1].startswith(f"event #3 ({good['event_id']!r}): schema_violation: ")
        assert "customer" in rejects[1]
        assert rejects[2].startswith("event #4 (no event_id): schema_violation: ")
        assert rejects[3].startswith("event #5 ('e-5'): not JSON-serialisable: ")
        assert len(rejects) == 4

    def test_a_missing_source_is_taken_from_the_subject_as_in_ingest(self) -> None:
        event = {k: v for k, v in demo_events(1)[0].items() if k != "source"}
        assert check_events([event]) == []


@pytest.mark.parametrize(
    ("source", "token"),
    [
        ("shopify", "shopify"),
        ("my shop.eu", "my_shop_eu"),
        ("a*b>c", "a_b_c"),
        ("", "unknown"),
        ("...", "unknown"),
        (None, "unknown"),
        (42, "unknown"),
    ],
)
def test_subject_token(source: object, token: str) -> None:
    assert subject_token(source) == token


class TestNatsServer:
    async def test_starts_on_a_free_port_with_jetstream(self, tmp_path: Path) -> None:
        server = NatsServer(store_dir=tmp_path)
        server.start()
        try:
            assert server.port not in (0, 4222)
            assert server.url == f"nats://127.0.0.1:{server.port}"
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await js.add_stream(name="T", subjects=["t.>"])
            ack = await js.publish("t.x", b"hello")
            assert ack.seq == 1
            await nc.close()
        finally:
            server.stop()
        assert not server.running
        assert not _pid_alive(server.pid)
        assert (tmp_path / "nats-server.log").is_file()

    async def test_restart_after_kill_keeps_port_and_streams(self, nats_server: NatsServer) -> None:
        nc = await nats.connect(nats_server.url)
        await nc.jetstream().add_stream(name="KEEP", subjects=["keep.>"])
        await nc.jetstream().publish("keep.a", b"1")
        await nc.close()
        url, old_pid = nats_server.url, nats_server.pid
        nats_server.kill()
        assert not _pid_alive(old_pid)
        nats_server.start()
        assert nats_server.url == url
        nc = await nats.connect(nats_server.url)
        info = await nc.jetstream().stream_info("KEEP")
        assert info.state.messages == 1
        await nc.close()

    def test_monitoring_port_on_request(self, tmp_path: Path) -> None:
        with NatsServer(store_dir=tmp_path, monitor_port=0) as server:
            assert server.monitor_url == f"http://127.0.0.1:{server.monitor_port}"
        assert NatsServer(store_dir=tmp_path).monitor_url is None

    def test_a_taken_port_is_a_clear_error(self, nats_server: NatsServer, tmp_path: Path) -> None:
        other = NatsServer(store_dir=tmp_path / "other", port=nats_server.port)
        with pytest.raises(RuntimeError, match="address already in use"):
            other.start()
        assert not other.running

    def test_url_before_start_fails_loudly(self, tmp_path: Path) -> None:
        with pytest.raises(RuntimeError, match="start the NatsServer first"):
            _ = NatsServer(store_dir=tmp_path).url
        assert NatsServer(store_dir=tmp_path, port=free_port()).url.startswith("nats://")


class TestPublishEvents:
    async def test_creates_stream_and_reports_duplicates(
        self, nats_server: NatsServer, client: Client
    ) -> None:
        events = demo_events(3)
        first = await publish_events(nats_server.url, events)
        assert (first.published, first.duplicates, first.errors) == (len(events), 0, [])
        second = await publish_events(nats_server.url, events)
        assert (second.published, second.duplicates, second.errors) == (0, len(events), [])
        info = await client.jetstream().stream_info(STREAM)
        assert info.state.messages == len(events)
        assert info.config.duplicate_window == StreamSettings().duplicate_window_s
        assert info.config.subjects == ["orders.>"]

    async def test_subject_and_headers(self, nats_server: NatsServer, client: Client) -> None:
        placed = demo_events(1)[0]
        poison: dict[str, Any] = {"source": "web shop", "state": "placed"}
        report = await publish_events(nats_server.url, [placed, poison])
        assert report.published == 2
        js = client.jetstream()
        good, bad = await js.get_msg(STREAM, 1), await js.get_msg(STREAM, 2)
        assert good.subject == "orders.state.shopify"
        assert good.headers is not None
        assert good.headers["Nats-Msg-Id"] == placed["event_id"]
        assert bad.subject == "orders.state.web_shop"
        assert not (bad.headers or {}).get("Nats-Msg-Id")
        assert json.loads(bad.data or b"") == poison

    async def test_leaves_an_existing_stream_alone(
        self, nats_server: NatsServer, client: Client
    ) -> None:
        js = client.jetstream()
        await js.add_stream(
            StreamConfig(name=STREAM, subjects=["orders.>", "extra.>"], duplicate_window=30)
        )
        report = await publish_events(nats_server.url, demo_events(1))
        assert not report.errors
        info = await js.stream_info(STREAM)
        assert info.config.subjects == ["orders.>", "extra.>"]
        assert info.config.duplicate_window == 30

    async def test_msg_id_suffix_resends_past_dedup(
        self, nats_server: NatsServer, client: Client
    ) -> None:
        events = demo_events(1)
        await publish_events(nats_server.url, events)
        again = await publish_events(nats_server.url, events, msg_id_suffix=lambda _: "-again")
        assert (again.published, again.duplicates) == (len(events), 0)

        async def stored_twice() -> bool:
            info = await client.jetstream().stream_info(STREAM)
            return bool(info.state.messages == 2 * len(events))

        await wait_until(stored_twice, timeout=2)

    async def test_unserialisable_event_is_reported_not_raised(
        self, nats_server: NatsServer
    ) -> None:
        events: list[dict[str, Any]] = [{"event_id": "x", "when": object()}, {"event_id": "y"}]
        report = await publish_events(nats_server.url, events)
        assert report.published == 1
        assert len(report.errors) == 1
        assert report.errors[0].startswith("event #1 ('x'): not JSON-serialisable")


def test_many_demo_orders_stay_in_the_past() -> None:
    # notifier refuses an occurred_at more than a few minutes ahead of its clock
    now = datetime.now(UTC)
    events = demo_events(60)
    assert max(datetime.fromisoformat(e["occurred_at"]) for e in events) < now
