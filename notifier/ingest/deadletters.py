"""The dead-letter stream: every refused event, its original headers and a reason.

A dead letter is stored (the stream acknowledged it) before its event is acked; see
``ingest.deadletter_store`` for what is done around a publish that fails.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError, ServerError

from notifier.core.model import DeadLetter
from notifier.errors import DeadLetterError
from notifier.redaction import redact
from notifier.streams import (
    DEADLETTER_PREFIX,
    DEADLETTER_STREAM,
    DETAIL,
    ORIGINAL_SEQ,
    ORIGINAL_SUBJECT,
    REASON,
)

#: how long one dead letter may wait for the stream's acknowledgement
PUBLISH_TIMEOUT_S = 5.0
#: nats-server's answer to deleting a message that is not (or no longer) in the stream
MSG_DELETE_FAILED = 10057


def dead_letter_detail(letter: DeadLetter) -> str:
    """The reason's detail as it is kept: one line, bounded, without contacts."""
    return redact(letter.detail.replace("\r", " ").replace("\n", " "))[:1000]


def letter_headers(letter: DeadLetter) -> dict[str, str]:
    """The original headers (less JetStream's own) and why it was refused.

    ``Nats-Msg-Id`` is derived from the event's stream position, so a redelivered batch
    republishes each dead letter under the same id and the stream keeps one.
    """
    m = letter.message
    headers = {k: v for k, v in m.headers.items() if not k.startswith("Nats-")}
    headers[REASON] = letter.reason.value
    headers[DETAIL] = dead_letter_detail(letter)
    headers[ORIGINAL_SUBJECT] = m.subject
    headers[ORIGINAL_SEQ] = str(m.seq)
    headers["Nats-Msg-Id"] = f"dlq-{m.seq}"
    if "Nats-Msg-Id" in m.headers:
        headers["Original-Nats-Msg-Id"] = m.headers["Nats-Msg-Id"]
    return headers


@dataclass(slots=True)
class Published:
    """What the stream acknowledged (with its sequence) and what it did not (and why)."""

    stored: list[tuple[DeadLetter, int]] = field(default_factory=list)
    failed: list[tuple[DeadLetter, BaseException]] = field(default_factory=list)

    def why(self) -> str:
        """Why the first failure failed, in words an operator can act on."""
        if not self.failed:
            return ""
        return _why(self.failed[0][1])


def _why(exc: BaseException) -> str:
    if isinstance(exc, NoStreamResponseError):
        return f"no stream takes {DEADLETTER_PREFIX}.* (is {DEADLETTER_STREAM} missing?)"
    if isinstance(exc, TimeoutError):
        return f"{DEADLETTER_STREAM} did not acknowledge in time"
    if isinstance(exc, APIError):
        return f"{DEADLETTER_STREAM} refused it: {exc.description or type(exc).__name__}"
    return f"{type(exc).__name__}"


async def publish_dead_letters(
    js: JetStreamContext,
    letters: Sequence[DeadLetter],
    *,
    timeout_s: float = PUBLISH_TIMEOUT_S,
) -> Published:
    """Publish every dead letter and wait, at most ``timeout_s``, for each one's
    acknowledgement from the DEADLETTER stream itself; never raises for a refusal.

    Plain request/reply publishes on the shared connection: no reply subscription of
    their own to leak, and each answer (or its absence) is checked one by one.
    """
    acks = await asyncio.gather(
        *(
            js.publish(
                f"{DEADLETTER_PREFIX}.{letter.reason.value}",
                letter.message.data,
                timeout=timeout_s,
                stream=DEADLETTER_STREAM,
                headers=letter_headers(letter),
            )
            for letter in letters
        ),
        return_exceptions=True,
    )
    result = Published()
    for letter, ack in zip(letters, acks, strict=True):
        if isinstance(ack, PubAck):
            result.stored.append((letter, ack.seq))
        else:
            result.failed.append((letter, ack))
    return result


async def delete_dead_letter(js: JetStreamContext, seq: int) -> None:
    """Remove one dead letter from the stream (the server overwrites it); one that is
    gone already (aged out, removed before) is no error."""
    try:
        await js.delete_msg(DEADLETTER_STREAM, seq)
    except NotFoundError:
        return
    except ServerError as exc:
        if exc.err_code == MSG_DELETE_FAILED:
            return
        raise DeadLetterError(f"cannot delete dead letter {seq}: {_why(exc)}") from exc
    except (NatsError, OSError) as exc:
        raise DeadLetterError(f"cannot delete dead letter {seq}: {_why(exc)}") from exc


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as listed by ``notifier dlq list``."""

    seq: int
    reason: str
    detail: str
    original_subject: str
    original_seq: int | None
    received_at: str
    #: the original payload, as refused
    body: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "seq": self.seq,
            "reason": self.reason,
            "detail": self.detail,
            "original_subject": self.original_subject,
            "original_seq": self.original_seq,
            "received_at": self.received_at,
            "body": self.body,
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
                    body=(msg.data or b"").decode("utf-8", errors="replace"),
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
