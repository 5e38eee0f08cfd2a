"""Whether ingest moves: the consumer's lag, its oldest unacknowledged event, a stall.

Read from JetStream's own account of the durable consumer, so every replica tells
the same story and a stall is seen whatever causes it (a batch held for ever, a
consumer that stopped pulling, a replica wedged on a lock). *Advancing* means the
consumer's ack floor moved: JetStream's first unacknowledged event is no longer the
same one. Ingest is *stalled* when events wait, the ack floor has not moved for
``stall_s`` (as seen by successive probes), and the oldest waiting event is at least
that old (so an event that just arrived after an idle hour is not a stall).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from notifier.metrics import Metrics
from notifier.streams import EVENTS_FILTER, ORDERS_STREAM

#: how long one probe may take before readiness says it could not tell
PROBE_TIMEOUT_S = 2.0
OK = "ok"
#: the prefix of a check that is not ``ok`` but leaves the service able to serve
DEGRADED = "degraded"


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """What one probe saw."""

    #: events not yet acknowledged: not delivered yet plus delivered and unacked
    lag: int
    #: age of the oldest of them, when there is one and JetStream still has it
    oldest_s: float | None
    #: how long the ack floor has stood still while events waited
    still_s: float


class IngestHealth:
    """Probes the durable consumer, exports the gauges, and judges a stall."""

    def __init__(
        self,
        durable: str,
        stall_s: float,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.durable = durable
        self.stall_s = stall_s
        self.metrics = metrics
        self._clock = clock
        self._wall = wall
        self._floor: int | None = None
        self._since = 0.0

    async def probe(self, js: JetStreamContext) -> IngestProgress:
        """Read the consumer's state once and update the gauges."""
        info = await js.consumer_info(ORDERS_STREAM, self.durable, timeout=PROBE_TIMEOUT_S)
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        lag = (info.num_pending or 0) + (info.num_ack_pending or 0)
        now = self._clock()
        if lag == 0 or floor != self._floor:
            self._floor, self._since = floor, now
        oldest = await self._oldest_age(js, floor) if lag else None
        progress = IngestProgress(lag=lag, oldest_s=oldest, still_s=now - self._since)
        m = self.metrics
        m.ingest_lag.set(lag)
        m.ingest_oldest_unacked_seconds.set(oldest or 0.0)
        m.ingest_stalled.set(1 if self.stalled(progress) else 0)
        return progress

    def stalled(self, progress: IngestProgress) -> bool:
        """Events wait, the floor stood still for ``stall_s``, and the oldest is as old."""
        return (
            progress.lag > 0
            and progress.still_s >= self.stall_s
            and (progress.oldest_s is None or progress.oldest_s >= self.stall_s)
        )

    async def check(self, js: JetStreamContext) -> str:
        """``ok``, or ``degraded: …`` saying what waits and for how long."""
        try:
            progress = await asyncio.wait_for(self.probe(js), PROBE_TIMEOUT_S * 2)
        except (TimeoutError, NatsError) as exc:
            return f"{DEGRADED}: ingest consumer state unavailable ({type(exc).__name__})"
        if not self.stalled(progress):
            return OK
        oldest = f", the oldest {progress.oldest_s:.0f} s old" if progress.oldest_s else ""
        return (
            f"{DEGRADED}: ingest has not advanced for {progress.still_s:.0f} s with "
            f"{progress.lag} event(s) waiting{oldest} (NOTIFIER_INGEST_STALL_S="
            f"{self.stall_s:g})"
        )

    async def _oldest_age(self, js: JetStreamContext, floor: int) -> float | None:
        """The age of the first order event after the ack floor."""
        try:
            msg = await js.get_msg(ORDERS_STREAM, seq=floor + 1, subject=EVENTS_FILTER, next=True)
        except NotFoundError:
            return None
        if msg.time is None:
            return None
        return max(0.0, (self._wall() - msg.time).total_seconds())
