"""Latency from publish to provider: joins what the fakes received with the ledger.

Every send carries its notification's identity to the provider (the email's
Message-ID, Twilio's message SID, the push's ``notification_id`` data field); the
ledger maps that to the event behind it, and the publisher noted when it published
that event.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Received:
    """One send as a provider fake saw it: the key the ledger knows it by, and when."""

    channel: str
    #: provider_message_id (email, SMS) or notification id (push)
    key: str
    at: float


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """What the ledger says about one notification."""

    id: str
    event_id: str
    channel: str
    provider_message_id: str | None


def timestamp(iso: str) -> float:
    """An ISO 8601 time with offset, as the fakes record it, in epoch seconds."""
    return datetime.fromisoformat(iso).timestamp()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary(values_ms: Iterable[float], unsent: int = 0) -> dict[str, float | None]:
    """count, p50, p95, p99 and max, in milliseconds. Sends that had not happened when the
    run stopped waiting count as infinitely late: a percentile that falls among them is
    None ("later than the run waited"), never a flattering number."""
    ordered = sorted(values_ms) + [math.inf] * unsent

    def finite(value: float) -> float | None:
        return None if math.isinf(value) or math.isnan(value) else value

    return {
        "count": len(ordered) - unsent,
        "unsent": unsent,
        "p50_ms": finite(percentile(ordered, 50)),
        "p95_ms": finite(percentile(ordered, 95)),
        "p99_ms": finite(percentile(ordered, 99)),
        "max_ms": finite(ordered[-1]) if ordered else None,
    }


def latencies(
    received: Iterable[Received],
    ledger: Iterable[LedgerRow],
    published: Mapping[str, Sequence[float]],
) -> tuple[list[tuple[str, float, float]], int]:
    """(channel, received at, latency in s) per send that can be traced to a publish,
    and how many sends could not be (which would be a bug in the harness or the
    service, so the caller reports it)."""
    by_key: dict[tuple[str, str], LedgerRow] = {}
    for row in ledger:
        key = row.id if row.channel == "push" else (row.provider_message_id or "")
        by_key[(row.channel, key)] = row
    out: list[tuple[str, float, float]] = []
    untraced = 0
    for send in received:
        found = by_key.get((send.channel, send.key))
        times = published.get(found.event_id, ()) if found else ()
        # the publish that caused it: the latest one before it arrived (a revision
        # re-publishes an event id; the correction follows the revision)
        before = [t for t in times if t <= send.at]
        if not before:
            untraced += 1
            continue
        out.append((send.channel, send.at, send.at - max(before)))
    return out, untraced


def report(
    traced: Sequence[tuple[str, float, float]],
    published_at: Sequence[float],
    origin: float,
    unsent: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Per-channel summaries, all channels together, and a per-second timeline
    (published, sent, p50 and p99 of the sends that arrived in that second). ``unsent``:
    per channel, sends still waiting when the run stopped waiting (``"all"`` may add
    events not even ingested by then)."""
    unsent = unsent or {}
    per_channel: dict[str, list[float]] = defaultdict(list)
    per_second: dict[int, list[float]] = defaultdict(list)
    for channel, at, seconds in traced:
        per_channel[channel].append(seconds * 1000)
        per_second[int(at - origin)].append(seconds * 1000)
    names = sorted(set(per_channel) | {c for c in unsent if c != "all"})
    channels = {name: summary(per_channel.get(name, []), unsent.get(name, 0)) for name in names}
    channels["all"] = summary((seconds * 1000 for _, _, seconds in traced), sum(unsent.values()))
    published_per_second: dict[int, int] = defaultdict(int)
    for t in published_at:
        published_per_second[int(t - origin)] += 1
    horizon = max([*per_second, *published_per_second], default=-1) + 1
    timeline = []
    for second in range(horizon):
        values = sorted(per_second.get(second, []))
        timeline.append(
            {
                "t": float(second),
                "published": published_per_second.get(second, 0),
                "sent": len(values),
                "p50_ms": percentile(values, 50) if values else None,
                "p99_ms": percentile(values, 99) if values else None,
            }
        )
    return {"channels": channels, "timeline": timeline}
