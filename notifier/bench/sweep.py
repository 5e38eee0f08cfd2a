"""The rate sweep: fixed-rate phases at rising rates, and the highest rate the service
sustains.

A rate is *sustained* when the p99 of every send it caused (publish → the fake's
receipt, all channels together) stays within 2 s and the publisher reached the rate.
Sends not made when the phase stopped waiting count as infinitely late, so a rate that
leaves a backlog behind is never sustained. The sweep runs its rates lowest first and
stops at the first one not sustained (every higher rate would take longer and tell
nothing more); the *sustainable rate* is the highest rate before it. One more phase at
half that rate gives the latency a service should keep with headroom.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from notifier.bench.values import at, num

#: the promise: an update reaches the customer within 2 seconds
SUSTAINED_P99_MS = 2000.0
#: a rate the publisher fell short of by more than this was not offered
ACHIEVED_SHARE = 0.95
CHANNELS = ("email", "sms", "push")
#: one fixed-rate phase at ``rate`` events/s; returns ``latency.report``'s dict with the
#: phase's rate, events, achieved rate, settled, unsent and untraced sends
Phase = Callable[[float], Awaitable[Mapping[str, Any]]]


def parse_rates(text: str) -> tuple[float, ...]:
    """``"100,200,400"`` as rates, lowest first and each once; ValueError for an empty
    list, a word that is not a number, or a rate that is not positive."""
    words = [word.strip() for word in text.split(",") if word.strip()]
    if not words:
        raise ValueError("give at least one rate, e.g. 100,200,400")
    rates = set()
    for word in words:
        try:
            rate = float(word)
        except ValueError:
            raise ValueError(f"{word!r} is not a rate (events/s)") from None
        if not rate > 0 or rate == float("inf"):
            raise ValueError(f"{word!r}: a rate must be a positive number of events/s")
        rates.add(rate)
    return tuple(sorted(rates))


def is_sustained(phase: Mapping[str, Any]) -> bool:
    """Whether a fixed-rate phase kept its p99 within 2 s at the rate it was asked for."""
    p99 = num(at(phase, "channels", "all", "p99_ms"))
    if p99 is None or p99 > SUSTAINED_P99_MS:
        return False
    rate = num(at(phase, "rate_per_s"))
    achieved = num(at(phase, "achieved_rate_per_s"))
    return rate is None or achieved is None or achieved >= ACHIEVED_SHARE * rate


def sweep_row(phase: Mapping[str, Any]) -> dict[str, Any]:
    """One rate of the sweep: its percentiles, all channels and per channel, and whether
    it was sustained."""
    channels = at(phase, "channels") or {}
    every = at(channels, "all") or {}
    return {
        "rate": at(phase, "rate_per_s"),
        "events": at(phase, "events"),
        "duration_s": at(phase, "duration_s"),
        "achieved_rate_per_s": at(phase, "achieved_rate_per_s"),
        "sends": every.get("count"),
        "unsent": every.get("unsent"),
        "p50_ms": every.get("p50_ms"),
        "p95_ms": every.get("p95_ms"),
        "p99_ms": every.get("p99_ms"),
        "max_ms": every.get("max_ms"),
        "per_channel": {name: dict(channels[name]) for name in CHANNELS if name in channels},
        "settled": at(phase, "settled"),
        "untraced_sends": at(phase, "untraced_sends"),
        "sustained": is_sustained(phase),
    }


def sustainable_rate(rows: Iterable[Mapping[str, Any]]) -> float | None:
    """The highest rate below the lowest rate not sustained (None when even the lowest
    was not): a rate above a failed one that happened to pass says nothing."""
    best = None
    for row in sorted(rows, key=lambda r: num(r.get("rate")) or 0.0):
        if not row.get("sustained"):
            break
        best = num(row.get("rate"))
    return best


def summarize(rows: list[dict[str, Any]], half: Mapping[str, Any] | None) -> dict[str, Any]:
    """``results["sweep"]``: the rows, the sustainable rate, and the p99 of the phase at
    half of it (``half``, a fixed-rate phase's dict, None when it was not run)."""
    best = sustainable_rate(rows)
    top = max((num(row.get("rate")) or 0.0 for row in rows), default=None)
    half_row = sweep_row(half) if half is not None else None
    return {
        "rates": rows,
        "sustainable_rate": best,
        "p99_at_half_sustainable_ms": half_row["p99_ms"] if half_row else None,
        "half_rate": half_row,
        "p99_target_ms": SUSTAINED_P99_MS,
        #: the highest rate swept was sustained: the service sustains at least that much
        "top_rate_sustained": best is not None and best == top,
    }


async def run_sweep(
    rates: Iterable[float], phase: Phase
) -> tuple[dict[str, Any], Mapping[str, Any] | None]:
    """Each rate lowest first until one is not sustained, then half the sustainable rate.
    Returns ``results["sweep"]`` and the half-rate phase as ``phase`` returned it."""
    rows: list[dict[str, Any]] = []
    for rate in sorted(rates):
        rows.append(sweep_row(await phase(rate)))
        if not rows[-1]["sustained"]:
            break
    best = sustainable_rate(rows)
    half = await phase(best / 2) if best is not None else None
    return summarize(rows, half), half
