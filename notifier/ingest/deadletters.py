"""The dead-letter stream: every refused event, its original headers and a reason."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from notifier.core.model import DeadLetter
from notifier.ingest.streams import DEADLETTER_PREFIX, DEADLETTER_STREAM

REASON = "Notifier-Reason"
DETAIL = "Notifier-Detail"
ORIGINAL_SUBJECT = "Notifier-Original-Subject"
ORIGINAL_SEQ = "Notifier-Original-Seq"


async def publish_dead_letters(js: JetStreamContext, letters: Iterable[DeadLetter]) -> int:
    """Publish each dead letter; a redelivered batch republishes with the same id (deduplicated)."""
    futures = []
    for letter in letters:
        m = letter.message
        headers = {k: v for k, v in m.headers.items() if not k.startswith("Nats-")}
        headers[REASON] = letter.reason.value
        headers[DETAIL] = letter.detail.replace("\r", " ").replace("\n", " ")[:1000]
        headers[ORIGINAL_SUBJECT] = m.subject
        headers[ORIGINAL_SEQ] = str(m.seq)
        headers["Nats-Msg-Id"] = f"dlq-{m.seq}"
        if "Nats-Msg-Id" in m.headers:
            headers["Original-Nats-Msg-Id"] = m.headers["Nats-Msg-Id"]
        subject = f"{DEADLETTER_PREFIX}.{letter.reason.value}"
        futures.append(await js.publish_async(subject, m.data, headers=headers))
    if futures:
        await js.publish_async_completed()
    return len(futures)


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as listed by ``notifier dlq list``."""

    seq: int
    reason: str
    detail: str
    original_subject: str
    original_seq: int | None
    received_at: str
    data: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "seq": self.seq,
            "reason": self.reason,
            "detail": self.detail,
            "original_subject": self.original_subject,
            "original_seq": self.original_seq,
            "received_at": self.received_at,
            "data": self.data,
        }


async def list_dead_letters(
    js: JetStreamContext, *, limit: int = 100, reason: str | None = None
) -> list[StoredDeadLetter]:
    """The newest dead letters, oldest first, read without consuming them."""
    try:
        info = await js.stream_info(DEADLETTER_STREAM)
    except NotFoundError:
        return []
    state = info.state
    found: list[StoredDeadLetter] = []
    seq = state.last_seq
    while seq >= state.first_seq and len(found) < limit and state.messages:
        try:
            msg = await js.get_msg(DEADLETTER_STREAM, seq)
        except NotFoundError:
            seq -= 1
            continue
        headers = msg.headers or {}
        if reason is None or headers.get(REASON) == reason:
            raw_seq = headers.get(ORIGINAL_SEQ)
            found.append(
                StoredDeadLetter(
                    seq=seq,
                    reason=headers.get(REASON, "unknown"),
                    detail=headers.get(DETAIL, ""),
                    original_subject=headers.get(ORIGINAL_SUBJECT, ""),
                    original_seq=int(raw_seq) if raw_seq and raw_seq.isdigit() else None,
                    received_at=_iso(getattr(msg, "time", None)),
                    data=(msg.data or b"").decode("utf-8", errors="replace"),
                )
            )
        seq -= 1
    found.reverse()
    return found


def _iso(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value or "")


def format_dead_letter(letter: StoredDeadLetter) -> str:
    """One JSON line per dead letter for the CLI."""
    return json.dumps(letter.as_dict(), ensure_ascii=False)
