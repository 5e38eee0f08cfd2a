"""The publisher in a process of its own: the delivery phases' events, at a fixed rate or
as fast as JetStream acks them.

The parent generates the messages (``workload.py``), writes them to a file and starts
``python -m notifier.bench.loadgen``, which connects, says it is ready, publishes them
and reports its progress; it then writes when it published each message (epoch seconds,
in the file's order) for the latency join. Neither generating the messages nor
publishing them takes CPU from the service's cores (``cores.py``).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import pickle
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nats

from notifier.bench.child import Child, bench_env, say
from notifier.bench.cores import CoreLayout
from notifier.bench.workload import Outgoing

#: the fixed-rate publisher wakes this often and sends whatever is due
TICK_S = 0.002
#: publishes in flight before waiting for their acks
ACK_EVERY = 500
#: progress is reported at most this often
PROGRESS_EVERY_S = 0.2


async def publish_elsewhere(
    nats_url: str,
    messages: Iterable[Outgoing],
    rate: float | None,
    *,
    work: Path,
    log_path: Path,
    layout: CoreLayout,
    bar: Any,
) -> list[float]:
    """Publish ``messages`` from a helper process at ``rate`` per second (None: as fast
    as acks come back); returns when each was published, in order."""
    batch = work / f"publish-{time.monotonic_ns()}.pickle"
    times_file = batch.with_suffix(".times")
    wire = [(out.subject, out.data, out.msg_id) for out in messages]
    await asyncio.to_thread(_write_batch, batch, wire)
    args = ["--nats-url", nats_url, "--input", str(batch), "--output", str(times_file)]
    if rate is not None:
        args += ["--rate", repr(rate)]
    child = await Child.start(
        "notifier.bench.loadgen", args, log_path, env=bench_env(), place=layout.pin_load
    )
    try:
        await child.ready()
        while True:
            report = await child.message()
            bar.update(report["published"] - bar.n)
            if report.get("done"):
                break
        await child.wait()
    finally:
        await child.stop()
    return await asyncio.to_thread(_read_times, batch, times_file)


def _write_batch(batch: Path, wire: list[tuple[str, bytes, str]]) -> None:
    batch.parent.mkdir(parents=True, exist_ok=True)
    batch.write_bytes(pickle.dumps(wire, protocol=pickle.HIGHEST_PROTOCOL))


def _read_times(batch: Path, times_file: Path) -> list[float]:
    times = array.array("d")
    times.frombytes(times_file.read_bytes())
    batch.unlink(missing_ok=True)
    times_file.unlink(missing_ok=True)
    return times.tolist()


async def _publish(
    nats_url: str, wire: list[tuple[str, bytes, str]], rate: float | None
) -> array.array[float]:
    nc = await nats.connect(nats_url, name="notifier-bench-publisher")
    js = nc.jetstream()
    times = array.array("d")
    say(ready=True, messages=len(wire))
    started = last_report = time.perf_counter()
    try:
        for n, (subject, data, msg_id) in enumerate(wire, start=1):
            if rate is not None:
                due = started + (n - 1) / rate
                if (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(max(wait, TICK_S) if wait > TICK_S else 0)
            times.append(time.time())
            await js.publish_async(subject, data, headers={"Nats-Msg-Id": msg_id})
            if n % ACK_EVERY == 0:
                await js.publish_async_completed()
            if (now := time.perf_counter()) - last_report >= PROGRESS_EVERY_S:
                last_report = now
                say(published=n)
        await js.publish_async_completed()
    finally:
        await nc.close()
    return times


def main() -> None:
    """The helper: publish the messages in ``--input``, write their times to ``--output``."""
    parser = argparse.ArgumentParser(prog="python -m notifier.bench.loadgen")
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=None)
    args = parser.parse_args()
    wire: list[tuple[str, bytes, str]] = pickle.loads(args.input.read_bytes())
    times = asyncio.run(_publish(args.nats_url, wire, args.rate))
    args.output.write_bytes(times.tobytes())
    say(published=len(wire), done=True)


if __name__ == "__main__":
    main()
