"""Dispatch messages waiting for an earlier message of their order, held in process.

Per-order FIFO means a "shipped" that finds "confirmed" still queued or in flight must
wait. Handing it back to JetStream with ``nak(delay)`` cost at least a second each time
(the ledger cannot say when the earlier one will be done), and a burst of one order's
events queued one behind the other paid it once per event. A message is parked here
instead, unacked, and tried again as soon as this worker records the fate of any
message of its order, or when the delay the ledger suggested runs out (the earlier one
may be another replica's). Parked messages count against JetStream's
``max_ack_pending`` like any held one; past ``limit`` they are naked as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.msg import Msg


class Parking:
    """One channel worker's parked dispatch messages, by order id."""

    def __init__(
        self, resume: Callable[[list[Msg]], Coroutine[Any, Any, None]], limit: int
    ) -> None:
        self._resume = resume
        self.limit = limit
        self._by_order: dict[str, list[Msg]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._count = 0

    def park(self, order_id: str, msg: Msg, wait_s: float) -> bool:
        """Hold ``msg`` until its order moves on, ``wait_s`` at most; False when full."""
        if self._count >= self.limit:
            return False
        self._by_order.setdefault(order_id, []).append(msg)
        self._count += 1
        timer = self._timers.get(order_id)
        due = asyncio.get_running_loop().time() + wait_s
        if timer is None or timer.when() > due:
            if timer is not None:
                timer.cancel()
            self._timers[order_id] = asyncio.get_running_loop().call_at(
                due, self.moved_on, order_id
            )
        return True

    def moved_on(self, order_id: str) -> None:
        """A message of this order was recorded (or its wait ran out): try its parked
        messages again now."""
        msgs = self._by_order.pop(order_id, None)
        timer = self._timers.pop(order_id, None)
        if timer is not None:
            timer.cancel()
        if not msgs:
            return
        self._count -= len(msgs)
        task = asyncio.create_task(self._resume(msgs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stopping: hand every parked message back to JetStream for whoever comes next,
        and wait for the retries already under way."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        parked, self._by_order, self._count = self._by_order, {}, 0
        for msgs in parked.values():
            for msg in msgs:
                await msg.nak()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
