"""How hard a channel may push its provider: a token bucket and a circuit breaker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from enum import StrEnum


class TokenBucket:
    """At most ``rate`` sends per second on average, bursts up to ``burst``; 0 = unlimited."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(rate, 1.0)
        self._tokens = self.capacity
        self._clock = clock
        self._stamp = clock()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        """Wait for one token."""
        if self.rate <= 0:
            return
        async with self._lock:  # first come, first served
            while True:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


class BreakerState(StrEnum):
    """A circuit breaker's state."""

    #: sends go through
    CLOSED = "closed"
    #: the provider looks down: nothing is sent until the pause is over
    OPEN = "open"
    #: the pause is over: one trial send decides whether to close again
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Stops sending to a provider after ``failures`` transient failures in a row.

    While open, messages are put back on the queue untried (their attempts are not
    counted), so an outage costs no customer their retries. A provider's
    ``Retry-After`` opens it for that long, whatever the count.
    """

    def __init__(
        self, failures: int, open_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.open_s = open_s
        self._clock = clock
        self._count = 0
        self._open_until = 0.0
        self._trial = False

    @property
    def state(self) -> BreakerState:
        """Where the breaker is now."""
        if self._open_until > self._clock():
            return BreakerState.OPEN
        if self._count >= self.failures:
            return BreakerState.HALF_OPEN
        return BreakerState.CLOSED

    def remaining(self) -> float:
        """Seconds the breaker stays open (0 when closed or ready for a trial)."""
        return max(self._open_until - self._clock(), 0.0)

    def wait(self) -> float:
        """0 if a send may go now, else seconds until it may be tried."""
        state = self.state
        if state is BreakerState.OPEN:
            return self._open_until - self._clock()
        if state is BreakerState.HALF_OPEN:
            if self._trial:
                return 1.0
            self._trial = True
        return 0.0

    def abandon_trial(self) -> None:
        """A send that ``wait`` let through did not happen: let another one try."""
        self._trial = False

    def success(self) -> None:
        """The provider accepted a message (or refused it for the message's own fault)."""
        self._count = 0
        self._trial = False
        self._open_until = 0.0

    def failure(self, retry_after: float | None = None) -> None:
        """The provider failed in a way that says nothing about the message."""
        self._count += 1
        self._trial = False
        if retry_after is not None and retry_after > 0:
            self._open_until = max(self._open_until, self._clock() + retry_after)
        elif self._count >= self.failures:
            self._open_until = self._clock() + self.open_s
