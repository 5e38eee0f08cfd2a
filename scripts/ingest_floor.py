"""The least CPU an event can cost in one process, stage by stage (issue 10's ingest line).

The budget asks ingest (sends excluded) to reach 0.25x of the raw NATS ceiling, where
the ceiling's consumer does nothing but fetch, ``json.loads`` and ack. This script
takes the bench's own workload (the same events, duplicates, revisions and poison) and
measures, in this one process and with no NATS at all, the CPU time per event
(``time.process_time``: every thread of the process, aiosqlite's included) of:

  raw        ``json.loads`` of each body (what the ceiling's consumer does besides NATS)
  decode     the service's decoder: JSON, limits, pydantic validation, canonical payload
  store      decode, then one SQLite transaction per batch that inserts only the
             events (the least a consumer that may ack must have made durable)
  service    the service's whole ingest step, ``BatchProcessor.process`` on the real
             pipeline and schema (decode, load orders, lifecycle, rules, rendering,
             the ledger rows and the outbox), sends excluded

and prints them beside the budget: 0.25x of the ceiling is at most 4x the ceiling's
per-event time. NATS's own cost (fetch and ack, ~35 us per event when measured by the
bench) comes on top of every stage alike.

    .venv/bin/python scripts/ingest_floor.py [--events 20000] [--batch 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from notifier.app import build_service
from notifier.bench.settings import service_settings
from notifier.bench.workload import Workload
from notifier.config import load_settings
from notifier.core.model import IncomingEvent, RawMessage
from notifier.ingest.decode import decode
from notifier.store.migrate import upgrade
from notifier.store.tables import events


def _messages(n: int, run_id: str = "floor") -> list[RawMessage]:
    workload = Workload(run_id=run_id, seed=1)
    return [
        RawMessage(out.data, {"Nats-Msg-Id": out.msg_id}, out.subject, seq)
        for seq, out in enumerate(workload.take(n), start=1)
    ]


def _batches(messages: Sequence[RawMessage], size: int) -> list[Sequence[RawMessage]]:
    return [messages[i : i + size] for i in range(0, len(messages), size)]


async def _cpu_per_event(
    batches: list[Sequence[RawMessage]], step: Callable[[Sequence[RawMessage]], Awaitable[None]]
) -> float:
    started = time.process_time()
    for batch in batches:
        await step(batch)
    return (time.process_time() - started) / sum(len(b) for b in batches) * 1e6


async def _raw(batch: Sequence[RawMessage]) -> None:
    for message in batch:
        with contextlib.suppress(ValueError):
            json.loads(message.data)


async def _decode(batch: Sequence[RawMessage]) -> None:
    now = datetime.now(UTC)
    for message in batch:
        decode(message, now=now)


def _event_row(item: IncomingEvent, now: datetime) -> dict[str, Any]:
    e = item.event
    return {
        "event_id": e.event_id,
        "order_id": e.order_id,
        "customer_id": e.customer.id,
        "seq": item.message.seq,
        "revised_seq": item.message.seq,
        "occurred_at": e.occurred_at,
        "state": e.state.value,
        "shipment_id": e.shipment.id if e.shipment else None,
        "content_hash": item.content_hash,
        "payload": item.payload,
        "retracted": e.retracted,
        "outcome": "applied",
        "received_at": now,
    }


async def main(n: int, batch_size: int) -> None:
    messages = _messages(n)
    batches = _batches(messages, batch_size)
    with tempfile.TemporaryDirectory() as work:
        url = f"sqlite+aiosqlite:///{Path(work) / 'floor.db'}"
        os.environ.update(service_settings("nats://127.0.0.1:1", url))
        os.environ["NOTIFIER_NULL_CHANNELS"] = "email,sms,push"
        service = build_service(load_settings())
        engine = service.engine
        await upgrade(engine)
        seen: set[str] = set()

        async def store(batch: Sequence[RawMessage]) -> None:
            now = datetime.now(UTC)
            rows = []
            for message in batch:
                item = decode(message, now=now)
                if isinstance(item, IncomingEvent) and item.event.event_id not in seen:
                    seen.add(item.event.event_id)
                    rows.append(_event_row(item, now))
            async with engine.begin() as conn:
                if rows:
                    await conn.execute(insert(events), rows)

        async def no_dead_letters(dead: Sequence[Any]) -> int:
            return len(dead)  # the service publishes them to NATS: not counted here

        processor = replace(service.consumer.processor, dead_letter_sink=no_dead_letters)

        async def whole(batch: Sequence[RawMessage]) -> None:
            await processor.process(batch)

        # a first pass over other orders compiles the templates and opens the connection
        warm = _batches(_messages(2 * batch_size, run_id="warm-up"), batch_size)
        await _cpu_per_event(warm, whole)
        results = {
            "raw": await _cpu_per_event(batches, _raw),
            "decode": await _cpu_per_event(batches, _decode),
            "store": await _cpu_per_event(batches, store),
        }
        async with engine.begin() as conn:
            await conn.execute(events.delete())
        results["service"] = await _cpu_per_event(batches, whole)
        await engine.dispose()
    print(f"{n} events from the bench workload, batches of {batch_size}, SQLite, CPU us/event")
    for name, us in results.items():
        print(f"  {name:<8} {us:8.1f}")
    print(
        "budget: ingest >= 0.25x the raw ceiling = at most 4x its time per event; "
        "the ceiling's consumer costs its NATS fetch and ack plus 'raw'"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.batch))
