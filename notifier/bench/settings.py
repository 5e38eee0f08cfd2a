"""What a benchmark run is asked to do, and the configuration it gives the service."""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from notifier.config import DEFAULT_RULES_FILE

#: the channel left out of the benchmark's rules: it has no provider, so no client
#: library could set a ceiling for it, and the ratios compare like with like
NO_CEILING_CHANNEL = "inapp"

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


@functools.cache
def bench_rules_file() -> Path:
    """The shipped transition rules without in-app (``NO_CEILING_CHANNEL``), written once
    per run: the rules without an in-app channel, and the in-app rules beside fallback
    chains dropped. Time rules are left out too: the workload's events are hours old,
    so held-state timers would fire mid-run and the runs would not compare with those
    before time rules existed (what they cost is the timer writes of a batch, which
    the transition-only run still pays only when the rules have time rules)."""
    shipped = yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8"))
    rules = []
    for rule in shipped["rules"]:
        if "state" not in rule["when"]:
            continue
        channels = [c for c in rule["channels"] if c != NO_CEILING_CHANNEL]
        if channels:
            rules.append({**rule, "channels": channels})
    path = Path(tempfile.mkdtemp(prefix="notifier-bench-")) / "rules.yaml"
    path.write_text(yaml.safe_dump({**shipped, "rules": rules}, sort_keys=False), "utf-8")
    return path


def service_settings(nats_url: str, database_url: str) -> dict[str, str]:
    """The real configuration, but with provider rate limits off (the fakes have none,
    and the point is what notifier itself sustains), the shipped transition rules
    without in-app (``bench_rules_file``), and no quiet hours (they would hold the
    workload's SMS and push until the customers' morning)."""
    return {
        "NOTIFIER_RULES_FILE": str(bench_rules_file()),
        "NOTIFIER_ENVIRONMENT": "production",
        "NOTIFIER_LOG_LEVEL": "INFO",
        "NOTIFIER_NATS_URL": nats_url,
        "NOTIFIER_DATABASE_URL": database_url,
        "NOTIFIER_SMS_RATE_PER_S": "0",
        "NOTIFIER_PUSH_RATE_PER_S": "0",
        "NOTIFIER_ALERT_CHECK_INTERVAL_S": "3600",
        "NOTIFIER_QUIET_HOURS": "",
        # `notifier bench --workers N`: the service's sends in N processes of their own
        "NOTIFIER_DISPATCH_WORKERS": os.environ.get("NOTIFIER_BENCH_DISPATCH_WORKERS", "0"),
    }
