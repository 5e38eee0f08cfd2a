"""What a benchmark run is asked to do, and the configuration it gives the service."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

REPLICAS_NEED_POSTGRES = (
    "--replicas needs --postgres URL: the replicas share one database, and SQLite is "
    "the store of one process"
)


@dataclass(frozen=True)
class BenchConfig:
    """How big each phase is."""

    out_dir: Path
    command: str
    quick: bool = False
    ingest_events: int = 1_000_000
    e2e_events: int = 10_000
    #: the fixed rates of the latency sweep, events/s, lowest first; the sweep stops at
    #: the first rate whose p99 passes 2 s
    rates: tuple[float, ...] = (50.0, 100.0, 200.0, 300.0, 400.0, 600.0, 800.0, 1200.0, 1600.0)
    #: seconds of publishing at each rate of the sweep
    duration_s: float = 30.0
    peer_messages: int = 1000
    progress: bool = True
    seed: int = 1
    #: how long a phase waits, once its events are published and ingested, for the last
    #: sends; what is still unsent then is reported as such
    settle_s: float = 120.0
    #: a PostgreSQL server to run on (a fresh database per phase) instead of SQLite
    postgres_url: str | None = None
    #: with ``postgres_url``: also run the ingest and end-to-end phases with this many
    #: service processes on one database, and with one, and report the scaling factor
    replicas: int | None = None

    def __post_init__(self) -> None:
        if self.replicas is not None and self.postgres_url is None:
            raise ValueError(REPLICAS_NEED_POSTGRES)
        if self.replicas is not None and self.replicas < 2:
            raise ValueError("--replicas: give 2 or more (one replica is always measured)")
        if not self.rates or min(self.rates) <= 0:
            raise ValueError("--rates: give at least one rate, each above 0 events/s")

    @classmethod
    def preset(cls, *, quick: bool, out_dir: Path, command: str) -> BenchConfig:
        """The full run, or the quick one (about two minutes on 2 cores)."""
        if not quick:
            return cls(out_dir=out_dir, command=command)
        return cls(
            out_dir=out_dir,
            command=command,
            quick=True,
            ingest_events=10_000,
            e2e_events=1_000,
            rates=(50.0, 100.0, 200.0),
            duration_s=5.0,
            peer_messages=200,
        )


def progress_bar(cfg: BenchConfig, total: float, desc: str, unit: str = "msg") -> tqdm[Any]:
    return tqdm(
        total=total, desc=desc, unit=unit, disable=not cfg.progress, leave=False, dynamic_ncols=True
    )


def service_settings(nats_url: str, database_url: str) -> dict[str, str]:
    """The real configuration, but with provider rate limits off: the fakes have none,
    and the point is what notifier itself sustains."""
    return {
        "NOTIFIER_ENVIRONMENT": "production",
        "NOTIFIER_LOG_LEVEL": "INFO",
        "NOTIFIER_NATS_URL": nats_url,
        "NOTIFIER_DATABASE_URL": database_url,
        "NOTIFIER_SMS_RATE_PER_S": "0",
        "NOTIFIER_PUSH_RATE_PER_S": "0",
        "NOTIFIER_ALERT_CHECK_INTERVAL_S": "3600",
        # `notifier bench --workers N`: the service's sends in N processes of their own
        "NOTIFIER_DISPATCH_WORKERS": os.environ.get("NOTIFIER_BENCH_DISPATCH_WORKERS", "0"),
    }
