"""Relearns the transit model (``core.transit``) from the store, now and then.

Runs in every process that ingests, beside the timer poller, and only when a rule
predicts lateness. Each round reads the recent deliveries (``store.transit``), builds
the model and hands the pipeline a new ``Forecast``: planning (arming timers) and the
poller (firing them) read it from there. Until the first round ends, and for carriers
with too little history, shipments get provisional timers that look again one round
later, so history that arrives after a parcel shipped is still used for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.clock import Clock, SystemClock
from notifier.core.pipeline import Pipeline
from notifier.core.rule_kinds import RuleKind
from notifier.core.transit import Forecast, TransitModel
from notifier.store.transit import load_samples

log = logging.getLogger(__name__)


@dataclass
class TransitLearner:
    """Keeps ``pipeline.forecast`` learned from the last ``window`` of deliveries."""

    engine: AsyncEngine
    #: the pipeline in effect now (the rules API swaps it between batches)
    pipeline: Callable[[], Pipeline]
    every_s: float = 600.0
    window: timedelta = timedelta(days=90)
    min_sample: int = 30
    clock: Clock = field(default_factory=SystemClock)
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        # until the first round, a prediction looks again one round later
        self._forecast = Forecast(TransitModel(self.min_sample), timedelta(seconds=self.every_s))
        self.pipeline().forecast = self._forecast

    @property
    def wanted(self) -> bool:
        """Whether any rule in effect predicts lateness."""
        return any(r.kind is RuleKind.PREDICTED_LATE for r in self.pipeline().rules.timed)

    def start(self) -> None:
        """Start; each round learns only while a rule predicts lateness (rules may
        change through the API)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="transit-learner")

    async def stop(self) -> None:
        """Stop; the model learned so far stays in use."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def learn(self) -> TransitModel:
        """One round: read the deliveries, build the model, put it in use."""
        samples = await load_samples(self.engine, since=self.clock.now() - self.window)
        model = TransitModel.learn(samples, min_sample=self.min_sample)
        self._forecast = Forecast(model, timedelta(seconds=self.every_s))
        self.pipeline().forecast = self._forecast
        return model

    async def _run(self) -> None:
        while True:
            try:
                current = self.pipeline()
                if self.wanted:
                    model = await self.learn()
                    log.debug("transit model: %s", model.groups())
                elif current.forecast is not self._forecast:
                    current.forecast = self._forecast  # rules swapped: keep what was learned
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("learning transit times failed; the last model stays in use")
            await asyncio.sleep(self.every_s)
