"""When to try a message again after a transient failure: exponential, jittered, bounded.

The n-th failed try waits ``base * 2**(n-1)`` seconds, at most ``cap``, of which the
``jitter`` fraction is random so that messages which failed together do not come back
together. When the provider said how long to wait (``Retry-After``, carried by
:class:`~engine.errors.TransientDeliveryError` as ``retry_after``) that is honoured,
plus up to 10% more so a crowd told the same time spreads out, bounded by
``retry_after_cap``. After ``max_tries`` tries the failure counts as permanent.

A :class:`~engine.errors.DeliveryDeferred` (breaker open, rate limit reached) was never a
try: wait its ``retry_after`` and do not count it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base: float = 5.0
    cap: float = 600.0
    jitter: float = 0.5
    max_tries: int = 5
    retry_after_cap: float = 3600.0

    def delay(
        self,
        tries: int,
        retry_after: float | None = None,
        rng: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after the ``tries``-th failed try (``tries`` >= 1)."""
        if retry_after is not None and retry_after > 0:
            return min(self.retry_after_cap, retry_after * (1 + 0.1 * rng()))
        exponential = min(self.cap, self.base * 2 ** max(0, tries - 1))
        return float(exponential * (1 - self.jitter) + exponential * self.jitter * rng())

    def exhausted(self, tries: int) -> bool:
        """True when ``tries`` failed tries are all a message gets."""
        return tries >= self.max_tries
