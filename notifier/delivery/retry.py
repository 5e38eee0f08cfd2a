"""When to try a failed send again."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped; a provider's Retry-After wins."""

    max_attempts: int = 12
    base_s: float = 2.0
    max_s: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_s, self.base_s * 2 ** max(attempt - 1, 0))
        jittered = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None and retry_after > 0:
            return retry_after
        return jittered

    def exhausted(self, attempt: int) -> bool:
        """Whether ``attempt`` was the last one allowed."""
        return attempt >= self.max_attempts
