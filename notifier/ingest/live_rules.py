"""The rules in effect, changed through the API and picked up by every replica.

The rules file is version 0; ``PUT /v1/rules`` stores a new version in ``rule_sets``.
Each ingest process asks the table for its newest version every ``poll_s`` (one
``max()`` on the primary key) and, on a new one, parses it exactly as the file was
parsed at start-up and hands it to the batch processor, which plans its next batch
with it (a batch in hand finishes with the rules it started with). The replica that
stored the version takes it at once.

A stored version that no longer validates here (a template it names was removed, a
channel is not registered in this deployment) is refused: the previous rules stay in
effect, one ERROR line says why, and ``health`` (``/readyz``) and the
``notifier_rules_refused_version`` gauge say so until a newer version is taken. At
start-up, a refused newest version falls back to the newest stored one that validates
rather than to the file, which may be many changes older.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.core.rules import RuleSet
from notifier.errors import RulesError
from notifier.metrics import Metrics
from notifier.store.rule_sets import (
    StoredRuleSet,
    newest_rule_set,
    newest_version,
    older_rule_sets,
    rule_set,
    store_rule_set,
)

log = logging.getLogger(__name__)

#: ``(document, origin) -> RuleSet``, raising ``RulesError``: the start-up validation
RulesParser = Callable[[str, str], RuleSet]


@dataclass(frozen=True, slots=True)
class ActiveRules:
    """A rules document and what it parsed to; version 0 is the rules file."""

    version: int
    document: str
    rules: RuleSet
    #: who stored it (``None`` for the file)
    author: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """A stored version that does not validate here, and the one-line reason."""

    version: int
    error: str


class LiveRules:
    """Holds the rules in effect and keeps them up to date with ``rule_sets``."""

    def __init__(
        self,
        engine: AsyncEngine,
        parse: RulesParser,
        file: ActiveRules,
        use: Callable[[RuleSet], None],
        metrics: Metrics,
        *,
        poll_s: float,
    ) -> None:
        self.engine = engine
        self._parse = parse
        self._file = file
        self._use = use
        self._metrics = metrics
        self.poll_s = poll_s
        self.active = file
        self.refused: Refusal | None = None
        # one refresh at a time: a slow poll must not apply an older version after a
        # PUT applied a newer one
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._db_down = False
        metrics.rules_version.set(file.version)

    def check(self, document: str, origin: str = "document") -> RuleSet:
        """Validate a document as start-up validates the file; raises ``RulesError``."""
        return self._parse(document, origin)

    async def publish(self, document: str, author: str) -> StoredRuleSet:
        """Validate, store as the next version, and put it in effect here at once (the
        other replicas follow at their next poll); raises ``RulesError`` if invalid."""
        self.check(document)
        stored = await store_rule_set(self.engine, document, author)
        await self.refresh()
        return stored

    async def start(self) -> None:
        """Take the newest stored version that validates, then poll for new ones."""
        async with self._lock:
            newest = await newest_rule_set(self.engine)
            if newest is not None and not self._take(newest):
                for older in await older_rule_sets(self.engine, newest.version):
                    if isinstance(taken := self._parsed(older), ActiveRules):
                        self._activate(taken)
                        break
        self._task = asyncio.create_task(self._poll(), name="rules-poll")

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def refresh(self) -> None:
        """Take the newest stored version if it is new (and validates)."""
        async with self._lock:
            newest = await newest_version(self.engine)
            if newest == self.active.version:
                return
            if self.refused is not None and newest == self.refused.version:
                return
            if newest == 0:  # the table was emptied: back to the file
                self._activate(self._file)
                return
            stored = await rule_set(self.engine, newest)
            if stored is not None:
                self._take(stored)

    def health(self) -> str:
        """``ok``, or ``degraded: …`` while a stored version is refused or polling stopped."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            exc = self._task.exception()
            return f"degraded: rules are no longer polled ({type(exc).__name__})"
        if self.refused is None:
            return "ok"
        return (
            f"degraded: rules version {self.refused.version} refused, version "
            f"{self.active.version} still in effect: {self.refused.error}"
        )

    def _take(self, stored: StoredRuleSet) -> bool:
        """Put a stored version in effect, or record (and log once) why it cannot be."""
        taken = self._parsed(stored)
        if isinstance(taken, ActiveRules):
            self._activate(taken)
            self.refused = None
            self._metrics.rules_refused_version.set(0)
            return True
        if self.refused is None or self.refused.version != stored.version:
            self.refused = Refusal(stored.version, taken)
            self._metrics.rules_refused_version.set(stored.version)
            log.error(
                "rules version %d refused, version %d stays in effect: %s",
                stored.version,
                self.active.version,
                taken,
            )
        return False

    def _parsed(self, stored: StoredRuleSet) -> ActiveRules | str:
        """The stored version parsed, or why it does not validate."""
        try:
            rules = self._parse(stored.document, f"rules version {stored.version}")
        except RulesError as exc:
            return str(exc)
        return ActiveRules(stored.version, stored.document, rules, stored.author, stored.created_at)

    def _activate(self, active: ActiveRules) -> None:
        self.active = active
        self._use(active.rules)
        self._metrics.rules_version.set(active.version)
        log.info("rules version %d in effect", active.version)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.refresh()
            except (SQLAlchemyError, OSError) as exc:
                if not self._db_down:  # once per outage, not twice a second
                    log.warning("rules poll: database unavailable (%s)", type(exc).__name__)
                self._db_down = True
                continue
            self._db_down = False
