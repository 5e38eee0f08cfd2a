"""Publish order events the way a platform team would, for ``notifier emit`` and tests.

Events are published as raw dicts: a malformed or id-less event is exactly what a
developer sends to watch the service dead-letter it. ``check_events`` is the opt-in
(``emit --check``): it runs the ingest's own decoder on each message as it would be
published, so it refuses exactly what the service would dead-letter as malformed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import BadRequestError, NotFoundError

from notifier.core.model import DeadLetter, RawMessage
from notifier.ingest.decode import decode
from notifier.nats_client import connect_once
from notifier.streams import ORDERS_STREAM, StreamSettings, orders_stream

STREAM = ORDERS_STREAM
MSG_ID_HEADER = "Nats-Msg-Id"
#: in flight at once; well under nats-py's default of 4000 pending async publishes
CHUNK = 1000
#: how long one chunk may wait for its acks before the rest count as errors
ACK_TIMEOUT_S = 30.0
_TOKEN_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class PublishReport:
    """What the stream said about each event: stored, already seen, or refused."""

    published: int = 0
    #: acknowledged as a duplicate of a ``Nats-Msg-Id`` inside the duplicate window
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)


def subject_token(source: object) -> str:
    """One valid subject token from an event's ``source``; ``unknown`` if there is none."""
    if not isinstance(source, str):
        return "unknown"
    token = _TOKEN_UNSAFE.sub("_", source.strip())[:100]
    return token if token.strip("_") else "unknown"


def _describe(index: int, event: dict[str, Any]) -> str:
    """Names an event in an error by position and id only: no customer data."""
    event_id = event.get("event_id")
    return f"event #{index} ({event_id!r})" if event_id else f"event #{index} (no event_id)"


async def ensure_stream(js: JetStreamContext) -> None:
    """Create the ORDERS stream if it is missing; an existing one is left as the service set it."""
    try:
        await js.stream_info(STREAM)
        return
    except NotFoundError:
        pass
    try:
        await js.add_stream(orders_stream(StreamSettings()))
    except BadRequestError:
        # The service created it between our two calls; theirs wins.
        await js.stream_info(STREAM)


def _encode(event: dict[str, Any]) -> bytes:
    """The message body; ``TypeError``/``ValueError`` if the event is not JSON."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


def _subject(subject_prefix: str, event: dict[str, Any]) -> str:
    return f"{subject_prefix}.{subject_token(event.get('source'))}"


def check_events(
    events: Sequence[dict[str, Any]], *, subject_prefix: str = "orders.state"
) -> list[str]:
    """One line per event the service would refuse: position, id, reason and detail.

    The message is built as :func:`publish_events` would send it and decoded by the
    ingest's own ``decode``, so the verdict is the service's, not a second opinion.
    What only the running service can judge (duplicates, an order's lifecycle) is
    left to it.
    """
    rejects: list[str] = []
    for index, event in enumerate(events, start=1):
        try:
            payload = _encode(event)
        except (TypeError, ValueError) as exc:
            rejects.append(f"{_describe(index, event)}: not JSON-serialisable: {exc}")
            continue
        found = decode(RawMessage(payload, {}, _subject(subject_prefix, event), index))
        if isinstance(found, DeadLetter):
            rejects.append(f"{_describe(index, event)}: {found.reason.value}: {found.detail}")
    return rejects


_Pending = list[tuple[int, dict[str, Any], "asyncio.Future[PubAck]"]]


async def _send_chunk(
    js: JetStreamContext,
    chunk: list[tuple[int, dict[str, Any]]],
    subject_prefix: str,
    msg_id_suffix: Callable[[dict[str, Any]], str] | None,
    report: PublishReport,
) -> _Pending:
    pending: _Pending = []
    for index, event in chunk:
        try:
            payload = _encode(event)
        except (TypeError, ValueError) as exc:
            report.errors.append(f"{_describe(index, event)}: not JSON-serialisable: {exc}")
            continue
        headers: dict[str, str] | None = None
        event_id = event.get("event_id")
        if event_id not in (None, ""):
            suffix = msg_id_suffix(event) if msg_id_suffix else ""
            headers = {MSG_ID_HEADER: f"{event_id}{suffix}"}
        subject = _subject(subject_prefix, event)
        pending.append((index, event, await js.publish_async(subject, payload, headers=headers)))
    return pending


def _tally(pending: _Pending, report: PublishReport) -> None:
    for index, event, future in pending:
        if not future.done():
            future.cancel()
            report.errors.append(f"{_describe(index, event)}: no ack within {ACK_TIMEOUT_S}s")
        elif (exc := future.exception()) is not None:
            report.errors.append(f"{_describe(index, event)}: {type(exc).__name__}: {exc}")
        elif future.result().duplicate:
            report.duplicates += 1
        else:
            report.published += 1


async def publish_events(
    nats_url: str,
    events: Iterable[dict[str, Any]],
    *,
    subject_prefix: str = "orders.state",
    msg_id_suffix: Callable[[dict[str, Any]], str] | None = None,
) -> PublishReport:
    """Publish each event as JSON on ``<subject_prefix>.<source>`` with ``Nats-Msg-Id``.

    ``msg_id_suffix`` is appended to the message id only (the body is untouched), so
    the same file can be sent again past the stream's deduplication to exercise the
    service's own dedupe. Events go out in chunks with async publishes, the fast path
    for bulk loads; a failed event is reported, not raised, so one bad event does not
    hide what happened to the rest.
    """
    report = PublishReport()
    nc = await connect_once(nats_url, name="notifier-emit")
    try:
        js = nc.jetstream()
        await ensure_stream(js)
        numbered = enumerate(events, start=1)
        while chunk := list(islice(numbered, CHUNK)):
            pending = await _send_chunk(js, chunk, subject_prefix, msg_id_suffix, report)
            # On timeout, _tally reports each event still waiting for its ack.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(js.publish_async_completed(), ACK_TIMEOUT_S)
            _tally(pending, report)
    finally:
        await nc.close()
    return report


def load_events(path: Path) -> list[dict[str, Any]]:
    """Read events from ``.json`` (one object or a list) or ``.jsonl`` (one per line).

    Only JSON syntax is checked: contract violations are left for the service to
    dead-letter. Errors name the file and line so a hand-edited file is quick to fix.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        found = [_jsonl_line(path, number, line) for number, line in _numbered_lines(text)]
        if not found:
            raise ValueError(f"{path}: no events in the file")
        return found
    if suffix != ".json":
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use .json or .jsonl")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    except RecursionError:
        raise ValueError(f"{path}: nested too deeply to read") from None
    items = data if isinstance(data, list) else [data]
    if not items:
        raise ValueError(f"{path}: no events in the file")
    for position, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise ValueError(
                f"{path}: item {position}: expected a JSON object, got {type(item).__name__}"
            )
    return items


def _numbered_lines(text: str) -> Iterable[tuple[int, str]]:
    return ((n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip())


def _jsonl_line(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{number}: invalid JSON: {exc.msg}") from exc
    except RecursionError:
        raise ValueError(f"{path}:{number}: nested too deeply to read") from None
    if not isinstance(item, dict):
        raise ValueError(f"{path}:{number}: expected a JSON object, got {type(item).__name__}")
    return item
