"""The benchmark's traffic: many orders walking through their lifecycles at once.

A stream of ready-to-publish messages, generated lazily (a million of them never sit
in memory): orders interleave as they would from a busy shop; about a fifth of the
messages are duplicates of an earlier event (a producer retrying past JetStream's
own duplicate window, so notifier has to recognise them); a few events come back
revised (same ``event_id``, new content: a correction); and a few are poison (bad
JSON, an unknown state, a missing customer) that must end up in the dead letters.

Every order has its own customer: always an email address, a push token for most,
a phone for some, an English or French locale. Contacts use ``example.com`` and 555
numbers only.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from notifier.devtools.demo import PATTERNS

#: messages that are duplicates of an earlier event: ``DUPLICATE_SHARE`` of all sent
DUPLICATE_SHARE = 0.2
#: shipment events that are later sent again with new content
REVISION_SHARE = 0.02
#: messages that are poison
POISON_SHARE = 0.001
#: orders in flight at once; their events interleave
IN_FLIGHT = 200
#: happy path, cancelled, delivery failed then delivered
PATTERN_WEIGHTS = (0.7, 0.15, 0.15)
_SHIPMENT_STATES = {"shipped", "out_for_delivery", "delivered", "delivery_failed"}
_POISON = (
    b'{"event_id": "poison", "order_id": ',  # cut short: invalid JSON
    b'{"event_id":"poison-%d","order_id":"P-%d","source":"web","state":"teleported",'
    b'"occurred_at":"2026-11-22T10:00:00Z","customer":{"id":"c"}}',  # unknown state
    b'{"event_id":"poison-%d","order_id":"P-%d","source":"web","state":"shipped",'
    b'"occurred_at":"2026-11-22T10:00:00Z"}',  # no customer
)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish."""

    subject: str
    data: bytes
    msg_id: str
    #: None for poison
    event_id: str | None
    #: event | duplicate | revision | poison
    kind: str


@dataclass
class Counts:
    """What a workload has produced so far."""

    orders: int = 0
    events: int = 0
    duplicates: int = 0
    revisions: int = 0
    poison: int = 0

    @property
    def messages(self) -> int:
        """Everything published: events, duplicates, revisions and poison."""
        return self.events + self.duplicates + self.revisions + self.poison


@dataclass
class _Order:
    number: int
    events: deque[dict[str, Any]]


class Workload:
    """An endless, seeded stream of order-event messages; ``counts`` tallies what came out."""

    def __init__(self, *, run_id: str, seed: int = 1, email_only: bool = False) -> None:
        self.run_id = run_id
        self.counts = Counts()
        self._rng = random.Random(seed)
        self._email_only = email_only
        self._start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        self._later: deque[tuple[int, Outgoing]] = deque()
        self._sent = 0
        #: orders in flight, each handing out its next event
        self._flight: list[_Order] = []

    def take(self, n: int) -> Iterator[Outgoing]:
        """The next ``n`` messages."""
        for _ in range(n):
            yield self._next()

    def _next(self) -> Outgoing:
        self._sent += 1
        if self._later and self._later[0][0] <= self._sent:
            return self._count(self._later.popleft()[1])
        if self._rng.random() < POISON_SHARE:
            return self._count(self._poison())
        return self._count(self._event())

    def _count(self, out: Outgoing) -> Outgoing:
        c = self.counts
        if out.kind == "event":
            c.events += 1
        elif out.kind == "duplicate":
            c.duplicates += 1
        elif out.kind == "revision":
            c.revisions += 1
        else:
            c.poison += 1
        return out

    def _event(self) -> Outgoing:
        flight = self._flight
        size = 1 if self._email_only else IN_FLIGHT
        while len(flight) < size:
            flight.append(self._new_order())
        slot = self._rng.randrange(len(flight))
        order = flight[slot]
        event = order.events.popleft()
        if not order.events:
            flight[slot] = flight[-1]
            flight.pop()
        out = self._message(event, event["event_id"], "event")
        # a duplicate share d of all messages needs d / (1 - d) duplicates per event
        if self._rng.random() < DUPLICATE_SHARE / (1 - DUPLICATE_SHARE):
            self._schedule(self._message(event, f"{event['event_id']}.dup", "duplicate"))
        if event["state"] in _SHIPMENT_STATES and self._rng.random() < REVISION_SHARE:
            revised = json.loads(json.dumps(event))
            revised["shipment"]["tracking_number"] += "R"
            revised["shipment"]["tracking_url"] += "R"
            self._schedule(self._message(revised, f"{event['event_id']}.rev", "revision"))
        return out

    def _schedule(self, out: Outgoing) -> None:
        due = self._sent + self._rng.randint(1, 50)
        self._later.append((due, out))
        if len(self._later) > 1 and self._later[-2][0] > due:
            self._later = deque(sorted(self._later, key=lambda pair: pair[0]))

    def _message(self, event: dict[str, Any], msg_id: str, kind: str) -> Outgoing:
        data = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        return Outgoing(f"orders.state.{event['source']}", data, msg_id, event["event_id"], kind)

    def _poison(self) -> Outgoing:
        n = self.counts.poison
        template = _POISON[n % len(_POISON)]
        data = template % (n, n) if b"%d" in template else template
        return Outgoing("orders.state.web", data, f"poison-{self.run_id}-{n}", None, "poison")

    def _new_order(self) -> _Order:
        c = self.counts
        c.orders += 1
        number = c.orders
        rng = self._rng
        if self._email_only:
            pattern: tuple[Any, ...] = PATTERNS[0][:1]
        else:
            pattern = rng.choices(PATTERNS, weights=PATTERN_WEIGHTS)[0]
        order_id = f"B-{self.run_id}-{number}"
        french = rng.random() < 0.3
        customer: dict[str, Any] = {
            "id": f"bench-customer-{self.run_id}-{number}",
            "name": "Émile Nelligan" if french else "Ada Lovelace",
            "email": f"c{number}@bench.example.com",
            "locale": "fr-CA" if french else "en-US",
            "timezone": "America/Toronto" if french else "America/Los_Angeles",
        }
        if not self._email_only:
            if rng.random() < 0.6:
                customer["push_tokens"] = [f"bench-token-{self.run_id}-{number}"]
            if rng.random() < 0.4:
                customer["phone"] = f"+1415555{number % 10_000:04d}"
        # within the last two hours whatever the order count: notifier refuses an
        # occurred_at more than a few minutes ahead of its clock
        at = self._start + timedelta(seconds=number % 3600)
        shipment = {
            "id": f"{order_id}-S1",
            "carrier": "UPS",
            "tracking_number": f"1Z{number:010d}",
            "tracking_url": f"https://track.example.com/1Z{number:010d}",
            "estimated_delivery": (at + timedelta(days=2)).isoformat(),
        }
        attributes = {
            "items": [
                {"name": "Single-origin beans 1 kg", "quantity": 2, "price": "24.50"},
                {"name": "Pour-over kettle", "quantity": 1, "price": "39.00"},
            ],
            "total": "88.00",
            "currency": "CAD" if french else "USD",
            "store_name": "Analytical Coffee Co.",
        }
        events: deque[dict[str, Any]] = deque()
        for step, state in enumerate(pattern, start=1):
            event: dict[str, Any] = {
                "event_id": f"{order_id}-{step}",
                "order_id": order_id,
                "source": "shopify" if number % 2 else "web",
                "state": str(state),
                "occurred_at": (at + timedelta(minutes=5 * step)).isoformat(),
                "customer": customer,
                "attributes": attributes,
            }
            if event["state"] in _SHIPMENT_STATES:
                event["shipment"] = shipment
            if event["state"] in ("cancelled", "delivery_failed"):
                event["reason"] = "No one was available to sign for the parcel"
            events.append(event)
        return _Order(number, events)
