"""The token bucket and the circuit breaker, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from notifier.delivery.limits import BreakerState, CircuitBreaker, TokenBucket
from notifier.delivery.stats import Counts, parse_window


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_the_failures_in_a_row_then_allows_one_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker(3, 10.0, clock=clock)
    for _ in range(2):
        breaker.failure()
    assert breaker.state is BreakerState.CLOSED and breaker.wait() == 0
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.wait() == pytest.approx(10.0)
    clock.now += 10.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.wait() == 0  # the trial
    assert breaker.wait() > 0  # everyone else waits for it
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 10.0
    assert breaker.wait() == 0
    breaker.success()
    assert breaker.state is BreakerState.CLOSED and breaker.wait() == 0


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(2, 10.0, clock=Clock())
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state is BreakerState.CLOSED


def test_retry_after_opens_the_breaker_for_that_long_at_once() -> None:
    clock = Clock()
    breaker = CircuitBreaker(5, 10.0, clock=clock)
    breaker.failure(retry_after=4.0)
    assert breaker.state is BreakerState.OPEN
    assert breaker.remaining() == pytest.approx(4.0)


async def test_token_bucket_spaces_sends_after_the_burst() -> None:
    bucket = TokenBucket(20.0, burst=2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(6):
        await bucket.take()
    # 2 at once, then 4 more at 20/s: at least 0.2 s
    assert loop.time() - start >= 0.18


async def test_a_zero_rate_is_unlimited() -> None:
    bucket = TokenBucket(0.0)
    for _ in range(10_000):
        await bucket.take()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        ("7d", 604800),
        ("3600", 3600),
        ("1.5h", 5400),
    ],
)
def test_windows(text: str, seconds: float) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "1w", "-1h", "0", "h", "500d"])
def test_bad_windows_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="window"):
        parse_window(text)


def test_delivery_rate_counts_only_finished_notifications() -> None:
    counts = Counts()
    assert counts.rate is None
    for status, n in {
        "sent": 5,
        "delivered": 3,
        "failed": 1,
        "undelivered": 1,
        "queued": 7,
        "suppressed": 4,
        "standby": 2,
    }.items():
        counts.add(status, n)
    assert counts.finished == 10
    assert counts.rate == pytest.approx(0.8)
