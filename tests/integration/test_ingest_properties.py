"""Bad input through the real ingest path: the batch processor with its pipeline,
templates and a real database. Whatever one message holds, the batch finishes, that
message is applied or dead-lettered with a reason, and its neighbours go through."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier.app import build_service
from notifier.core.model import DeadLetter, DeadLetterReason, RawMessage
from notifier.ingest import processor as processor_module
from notifier.ingest.processor import BatchProcessor
from notifier.store.migrate import upgrade
from tests.integration.helpers import event, settings_for
from tests.unit.test_decode_properties import (
    encode,
    good_event,
    json_values,
    mutated_events,
    nasty_text,
)

_orders = itertools.count()


@pytest.fixture
async def processor(tmp_path: Path) -> AsyncIterator[tuple[BatchProcessor, list[DeadLetter]]]:
    """The service's own processor on SQLite, its dead letters kept in a list."""
    settings = settings_for("nats://127.0.0.1:9", f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", 2525)
    service = build_service(settings)
    await upgrade(service.engine)
    letters: list[DeadLetter] = []

    async def keep(batch: Sequence[DeadLetter]) -> int:
        letters.extend(batch)
        return len(batch)

    yield dataclasses.replace(service.consumer.processor, dead_letter_sink=keep), letters
    await service.engine.dispose()


#: the unit properties' bodies, and the two that stalled ingest before: deep nesting
#: and text that is not Unicode (an unpaired surrogate escape) in attributes
hostile = st.one_of(
    st.binary(max_size=300),
    json_values.map(encode),
    mutated_events().map(encode),
    st.integers(1, 3_000).map(
        lambda n: encode({**good_event(), "attributes": {"x": f"\x00DEEP{n}\x00"}})
    ),
    nasty_text.map(lambda text: encode({**good_event(), "attributes": {"note": text}})),
)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=hostile)
async def test_one_hostile_message_never_holds_up_its_batch(
    processor: tuple[BatchProcessor, list[DeadLetter]], data: bytes
) -> None:
    apply, letters = processor
    letters.clear()
    n = next(_orders)
    before, after = event(f"P{n}-a", "placed", 0), event(f"P{n}-b", "placed", 0)
    batch = [
        RawMessage(json.dumps(before).encode(), {}, "orders.state.web", 3 * n + 1),
        RawMessage(data, {}, "orders.state.web", 3 * n + 2),
        RawMessage(json.dumps(after).encode(), {}, "orders.state.web", 3 * n + 3),
    ]
    plan = await apply.process(batch)  # returns: no exception, no retry, no stall
    told = {(note.order_id, note.template, note.status.value) for note in plan.notifications}
    assert (f"P{n}-a", "order_confirmed", "queued") in told
    assert (f"P{n}-b", "order_confirmed", "queued") in told
    for letter in letters:
        assert letter.message.seq == 3 * n + 2
        assert letter.reason in DeadLetterReason
        assert letter.detail and letter.detail.isprintable()
    assert len(letters) <= 1


async def test_an_unforeseen_error_decoding_one_message_dead_letters_that_message_alone(
    processor: tuple[BatchProcessor, list[DeadLetter]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a bug no limit foresaw, standing in for the RecursionError that stalled ingest
    real = processor_module.decode

    def broken(message: RawMessage, *args: Any) -> Any:
        if message.seq == 2:
            raise RecursionError("maximum recursion depth exceeded")
        return real(message, *args)

    monkeypatch.setattr(processor_module, "decode", broken)
    apply, letters = processor
    batch = [
        RawMessage(json.dumps(event(f"U-{seq}", "placed", 0)).encode(), {}, "orders.state.web", seq)
        for seq in (1, 2, 3)
    ]
    plan = await apply.process(batch)
    assert [(d.message.seq, d.reason, d.detail) for d in letters] == [
        (2, DeadLetterReason.PROCESSING_ERROR, "RecursionError while decoding")
    ]
    assert {note.order_id for note in plan.notifications} == {"U-1", "U-3"}
