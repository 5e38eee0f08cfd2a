"""The dispatch recorder: claims and outcomes of many sends, written together, leave
the ledger exactly as one transaction each would."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core.model import NotificationStatus as Q
from notifier.delivery.fates import Fate, Outcome
from notifier.delivery.ledger import Claim, claim
from notifier.delivery.recorder import Recorder
from notifier.store.db import create_engine
from notifier.store.migrate import upgrade
from notifier.store.tables import notifications

N = notifications.c


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


def _row(nid: str, order: str, seq: int, **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": nid,
        "idempotency_key": f"k-{nid}",
        "event_id": f"e-{nid}",
        "order_id": order,
        "customer_id": "c-1",
        "channel": "email",
        "template": "t",
        "state": "shipped",
        "recipient": "a@example.com",
        "subject": "s",
        "body_text": "b",
        "status": Q.QUEUED.value,
        "priority": 1,
        "event_seq": seq,
        "digest": "d",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now + timedelta(microseconds=seq),
        "updated_at": now,
        "dispatch_pending": False,
        "dispatch_gen": 0,
        "fallback_group": None,
        "fallback_rank": None,
        **extra,
    }


async def _statuses(engine: AsyncEngine) -> dict[str, tuple[str, int, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(N.id, N.status, N.attempts, N.last_error))
        return {r.id: (r.status, r.attempts, r.last_error) for r in rows}


async def test_many_claims_and_outcomes_at_once(engine: AsyncEngine) -> None:
    rows = [_row(f"n{i}", f"o{i}", 1) for i in range(12)]
    rows += [
        _row("later", "o0", 2),  # behind n0 of the same order
        _row("g1", "og", 1, fallback_group="grp", fallback_rank=0),
        _row(
            "g2",
            "og",
            1,
            channel="sms",
            status=Q.STANDBY.value,
            fallback_group="grp",
            fallback_rank=1,
        ),
        _row("h1", "oh", 1, fallback_group="grh", fallback_rank=0),
        _row(
            "h2",
            "oh",
            1,
            channel="sms",
            status=Q.STANDBY.value,
            fallback_group="grh",
            fallback_rank=1,
        ),
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(notifications), rows)
    recorder = Recorder(engine)

    def claiming(ids: list[str]) -> Any:
        return recorder.run(functools.partial(claim, ids=ids, lease_s=60.0))

    # three claims in flight at once share a transaction; the later message waits
    claims: list[Claim] = await asyncio.gather(
        claiming([f"n{i}" for i in range(6)] + ["later"]),
        claiming([f"n{i}" for i in range(6, 12)]),
        claiming(["g1", "h1", "n0"]),
    )
    first, second, third = claims
    assert {c.id for c in first.claimed} == {f"n{i}" for i in range(6)}
    assert not first.held["later"].done and first.held["later"].delay_s >= 1.0
    assert {c.id for c in second.claimed} == {f"n{i}" for i in range(6, 12)}
    assert {c.id for c in third.claimed} == {"g1", "h1"}
    assert not third.held["n0"].done  # already claimed by the first: in flight
    items = {c.id: c for claim_ in claims for c in claim_.claimed}

    outcomes = [
        Outcome(items[f"n{i}"], Fate.SENT, provider="smtp", provider_message_id=f"m{i}")
        for i in range(8)
    ]
    outcomes += [
        Outcome(items["n8"], Fate.RETRY, delay_s=30.0, error="busy"),
        Outcome(items["n9"], Fate.RELEASED, delay_s=0.0),
        Outcome(items["n10"], Fate.GIVEN_UP, error="refused"),
        Outcome(items["n11"], Fate.GIVEN_UP, error="gone", status=Q.SUPPRESSED),
        Outcome(items["g1"], Fate.SENT, provider="smtp", provider_message_id="mg"),
        Outcome(items["h1"], Fate.GIVEN_UP, error="refused"),
    ]
    await asyncio.gather(*(recorder.write(o) for o in outcomes))

    got = await _statuses(engine)
    assert all(got[f"n{i}"][0] == Q.SENT.value for i in range(8))
    assert got["n8"] == (Q.QUEUED.value, 1, "busy")
    assert got["n9"] == (Q.QUEUED.value, 0, None)  # released: the attempt is not counted
    assert got["n10"] == (Q.FAILED.value, 1, "refused")
    assert got["n11"] == (Q.SUPPRESSED.value, 1, "gone")
    assert got["g1"][0] == Q.SENT.value
    assert got["g2"][0] == Q.SUPPRESSED.value  # the group's standby stood down
    assert got["h1"][0] == Q.FAILED.value
    assert got["h2"][0] == Q.QUEUED.value  # the group fell back to its next channel

    # n0 is sent now: the later message of its order can be claimed, and a duplicate
    # dispatch message for a sent one finds nothing to claim
    again: Claim = await claiming(["later", "n1"])
    assert [c.id for c in again.claimed] == ["later"]
    assert again.held["n1"].done


async def test_a_receipt_that_overtook_the_record_is_kept(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(notifications), [_row("a", "o1", 1), _row("b", "o2", 1)])
    recorder = Recorder(engine)
    found: Claim = await recorder.run(functools.partial(claim, ids=["a", "b"], lease_s=60.0))
    items = {c.id: c for c in found.claimed}
    async with engine.begin() as conn:
        await conn.execute(
            notifications.update().where(N.id == "a").values(status=Q.DELIVERED.value)
        )
    await asyncio.gather(
        *(
            recorder.write(Outcome(items[i], Fate.SENT, provider="twilio", provider_message_id=i))
            for i in ("a", "b")
        )
    )
    got = await _statuses(engine)
    assert got["a"][0] == Q.DELIVERED.value
    assert got["b"][0] == Q.SENT.value
