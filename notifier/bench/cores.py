"""Which cores each side of a bench run has: the service's, and the load's.

The *service side* is what is measured: the service processes, the raw NATS consumer
and the client-ceiling process (each stands for "one process of ours"). The *load side*
is what they are measured against: nats-server, the provider fakes, the publisher and
the bench process that watches. On a machine with at least :data:`PIN_FROM_CORES`
usable cores the two sides are pinned apart (``os.sched_setaffinity``), so that the
service's cores are its own; below that there is nothing to split and both sides share
every core, which the report says.

Affinity on Linux belongs to a thread, and a new thread inherits its creator's: a
process is pinned by pinning every thread it has, as soon as it starts (before it has
started many); what it starts later inherits.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: fewer usable cores than this: no pinning, both sides share them all
PIN_FROM_CORES = 4
#: the load side's share of the cores when pinned (at least two: nats-server and the fakes)
LOAD_SHARE = 4


@dataclass(frozen=True, slots=True)
class CoreLayout:
    """The cores of each side; ``pinned`` False when both sides share every core."""

    service: frozenset[int]
    load: frozenset[int]
    pinned: bool

    @classmethod
    def plan(cls, usable: frozenset[int] | None = None) -> CoreLayout:
        """Split ``usable`` (this process's affinity by default): a quarter, at least two,
        for the load side, the rest for the service side; no split below four cores."""
        cores = sorted(usable if usable is not None else os.sched_getaffinity(0))
        if len(cores) < PIN_FROM_CORES:
            every = frozenset(cores)
            return cls(service=every, load=every, pinned=False)
        load = max(2, len(cores) // LOAD_SHARE)
        return cls(service=frozenset(cores[:-load]), load=frozenset(cores[-load:]), pinned=True)

    def pin_service(self, pid: int) -> None:
        """Put process ``pid`` (every thread it has) on the service side's cores."""
        if self.pinned:
            pin(pid, self.service)

    def pin_load(self, pid: int) -> None:
        """Put process ``pid`` (every thread it has) on the load side's cores."""
        if self.pinned:
            pin(pid, self.load)

    @contextlib.contextmanager
    def service_side(self) -> Iterator[None]:
        """Run the calling thread on the service side's cores meanwhile (the raw NATS
        consumer runs in the bench process, and should have what the service has)."""
        if not self.pinned:
            yield
            return
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.service)
        try:
            yield
        finally:
            os.sched_setaffinity(0, before)

    def describe(self) -> dict[str, Any]:
        """For ``results["meta"]["cores"]``: how many cores each side had, and how."""
        if self.pinned:
            note = (
                f"pinned with sched_setaffinity: the service side (service processes, raw "
                f"NATS consumer, client ceiling) on {len(self.service)} cores, the load side "
                f"(nats-server, provider fakes, publisher, bench) on the other {len(self.load)}"
            )
        else:
            note = (
                f"not pinned (fewer than {PIN_FROM_CORES} cores): the service, nats-server, "
                f"the provider fakes and the publisher share all {len(self.service)} cores"
            )
        return {
            "pinned": self.pinned,
            "service": sorted(self.service),
            "load": sorted(self.load),
            "service_cores": len(self.service),
            "load_cores": len(self.load),
            "note": note,
        }


def pin(pid: int, cores: frozenset[int]) -> None:
    """Set the affinity of every thread of ``pid``; a thread that has just ended is skipped."""
    try:
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        threads = [pid]
    for tid in threads:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, cores)
