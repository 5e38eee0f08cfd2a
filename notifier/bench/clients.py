"""The client ceiling: the end-to-end burst's sends, straight through our channel clients.

What the fakes received during the burst is replayed as the messages that were sent
(same recipients, subjects and bodies, so the same rendered sizes and the same share of
email, SMS and push) through the channel adapters the service uses, built by their
``PLUGIN``s from the service's own settings: the pooled aiosmtplib client, the twilio
async client, firebase-admin on its thread pool, to the same fakes. No queue, ledger,
database or NATS: each channel keeps as many sends in flight as the service does
(``SendLimits.concurrency``), all three at once, in one process of its own on the
service side's cores (``cores.py``). That is the most any design of one process could
send on this machine, and the end-to-end burst is reported as a share of it.

A channel's rate is its sends over the time until its last send was answered; the total
is every send over the time until the last of all. The burst is measured the same way:
each channel from the first publish to its own last send, the total to the last of all.
The ceiling's events/s is the rate at which it could carry the burst's events (events
times its sends/s over the burst's sends).
Twilio's status callbacks are left out (no ``NOTIFIER_PUBLIC_BASE_URL``): they cost the
fake and the service, not the client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from notifier.bench.child import Child, bench_env, say
from notifier.bench.cores import CoreLayout
from notifier.bench.fakes import FakesHost
from notifier.bench.values import at, num
from notifier.channels import registry
from notifier.channels.base import ChannelAdapter, OutboundMessage
from notifier.config import load_settings
from notifier.contracts.channels import CUSTOMER_CHANNELS
from notifier.errors import DeliveryError


async def ceiling_phase(
    fakes: FakesHost,
    settings: Mapping[str, str],
    burst: Mapping[str, Any],
    *,
    work: Path,
    out_dir: Path,
) -> dict[str, Any]:
    """Right after the burst: what the fakes received, replayed through the clients alone
    to the same fakes; ``results["client_ceiling"]`` (with what was replayed and what the
    fakes received from the replay, per channel)."""
    sent = work / "burst-sends.jsonl"
    replayed = await fakes.export(sent)
    await fakes.clear()
    measured = await client_ceiling(
        settings, sent, log_path=out_dir / "bench-clients.log", layout=fakes.layout
    )
    received = Counter(send.channel for send in await fakes.received())
    await fakes.clear()
    received_by_channel = {channel: received[channel] for channel in replayed}
    return compare(measured | {"replayed": replayed, "received": received_by_channel}, burst)


async def client_ceiling(
    settings: Mapping[str, str], messages: Path, *, log_path: Path, layout: CoreLayout
) -> dict[str, Any]:
    """Replay ``messages`` (JSON lines of ``OutboundMessage``) in a helper process with the
    service's ``settings``; returns what :func:`send_all` measured."""
    env = bench_env({k: v for k, v in settings.items() if k != "NOTIFIER_PUBLIC_BASE_URL"})
    child = await Child.start(
        "notifier.bench.clients",
        ["--input", str(messages)],
        log_path,
        env=env,
        place=layout.pin_service,
    )
    try:
        await child.ready()
        result = await child.message()
        await child.wait()
    finally:
        await child.stop()
    return result


async def send_all(
    adapters: Mapping[str, ChannelAdapter],
    messages: Mapping[str, Sequence[OutboundMessage]],
    concurrency: Mapping[str, int],
) -> dict[str, Any]:
    """Send every message on its channel's adapter, ``concurrency[channel]`` at a time,
    all channels at once; sends, errors and rates per channel and in total."""
    started = time.perf_counter()

    async def channel(name: str) -> dict[str, Any]:
        pending = iter(messages.get(name, ()))
        errors: Counter[str] = Counter()
        sent = 0
        finished = started

        async def worker() -> None:
            nonlocal sent, finished
            for message in pending:
                try:
                    await adapters[name].send(message)
                    sent += 1
                except DeliveryError as exc:
                    errors[exc.code or type(exc).__name__] += 1
                finished = time.perf_counter()

        await asyncio.gather(*(worker() for _ in range(concurrency[name])))
        seconds = finished - started
        return {
            "sends": sent,
            "errors": sum(errors.values()),
            "error_codes": dict(errors),
            "concurrency": concurrency[name],
            "seconds": seconds,
            "sends_per_s": sent / seconds if sent and seconds > 0 else None,
        }

    names = [name for name in adapters if messages.get(name)]
    results = dict(zip(names, await asyncio.gather(*(channel(n) for n in names)), strict=True))
    seconds = max((r["seconds"] for r in results.values()), default=0.0)
    sent = sum(r["sends"] for r in results.values())
    return {
        "channels": results,
        "sends": sent,
        "errors": sum(r["errors"] for r in results.values()),
        "seconds": seconds,
        "sends_per_s": sent / seconds if sent and seconds > 0 else None,
    }


def compare(ceiling: Mapping[str, Any], burst: Mapping[str, Any]) -> dict[str, Any]:
    """``results["client_ceiling"]``: the ceiling, its events/s, and the burst's sends/s
    as a share of it, per channel and in total (None where either side is missing)."""

    def share(ours: float | None, most: float | None) -> float | None:
        return ours / most if ours is not None and most else None

    seconds = num(at(burst, "seconds"))
    per_channel = {}
    for name, measured in (at(ceiling, "channels") or {}).items():
        sends = num(at(burst, "sends", name))
        # over the time until the channel's own last send (as the ceiling times it); a
        # burst recorded without it falls back to the whole burst's time
        span = num(at(burst, "channel_seconds", name)) or seconds
        ours = sends / span if sends is not None and span else None
        per_channel[name] = {
            **measured,
            "end_to_end_sends_per_s": ours,
            "ratio": share(ours, num(measured.get("sends_per_s"))),
        }
    most = num(at(ceiling, "sends_per_s"))
    burst_sends = num(at(burst, "sends_per_s"))
    events = num(at(burst, "events_per_s"))
    return {
        **ceiling,
        "channels": per_channel,
        "events_per_s": events * most / burst_sends if events and most and burst_sends else None,
        "end_to_end_sends_per_s": burst_sends,
        "ratio": share(burst_sends, most),
    }


def _read(path: Path) -> dict[str, list[OutboundMessage]]:
    found: dict[str, list[OutboundMessage]] = {}
    with path.open() as lines:
        for line in lines:
            message = OutboundMessage(**json.loads(line))
            found.setdefault(message.channel, []).append(message)
    return found


async def _replay(messages: Mapping[str, Sequence[OutboundMessage]]) -> None:
    settings = load_settings()
    plugins = [registry.load(name) for name in CUSTOMER_CHANNELS if messages.get(name)]
    adapters = {plugin.name: plugin.build(settings) for plugin in plugins}
    concurrency = {plugin.name: plugin.limits(settings).concurrency for plugin in plugins}
    for adapter in adapters.values():
        await adapter.start()
    try:
        say(ready=True, messages={name: len(found) for name, found in messages.items()})
        say(**await send_all(adapters, messages, concurrency))
    finally:
        for adapter in adapters.values():
            await adapter.close()


def main() -> None:
    """The helper: replay ``--input`` with the settings in the environment, say the result."""
    parser = argparse.ArgumentParser(prog="python -m notifier.bench.clients")
    parser.add_argument("--input", type=Path, required=True)
    asyncio.run(_replay(_read(parser.parse_args().input)))


if __name__ == "__main__":
    main()
