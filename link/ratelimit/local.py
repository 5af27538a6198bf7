"""In-process buckets: the default backend, and the fallback when Redis is away.

Budgets here belong to one process: with several Link workers or replicas each
has its own (use the Redis backend for one shared budget).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from link.ratelimit.bucket import take
from link.ratelimit.keys import Limit
from link.ratelimit.verdict import Verdict, summarize

__all__ = ["LocalLimiter"]


class LocalLimiter:
    """Token buckets in a dict, keyed by :attr:`Limit.key`; not thread-safe (one event loop)."""

    def __init__(self, max_buckets: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, float] = {}  # key -> full_at (clock seconds)
        self._max = max_buckets
        self._clock = clock
        self.evicted = 0  # buckets dropped while not full (they came back full: a free burst)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, limits: Sequence[Limit]) -> Verdict:
        """Take one token from every bucket, or from none if any is empty (``limits`` is not empty)."""
        now = self._clock()
        buckets = self._buckets
        takes = [take(buckets.get(lim.key), now, lim.interval_s, lim.capacity) for lim in limits]
        # All or nothing: a refused request must not spend the budgets that had room.
        for t in takes:
            if not t.allowed:
                return summarize(limits, takes)
        for i, lim in enumerate(limits):
            buckets[lim.key] = takes[i].full_at
        if len(buckets) > self._max:
            self._shrink(now)
        return summarize(limits, takes)

    def _shrink(self, now: float) -> None:
        """Forget full buckets (lossless: a missing bucket is full); if that is not enough, the oldest."""
        buckets = self._buckets
        for key in [k for k, full_at in buckets.items() if full_at <= now]:
            del buckets[key]
        # Keep a margin so a busy process does not sweep on every request.
        target = self._max * 9 // 10
        if len(buckets) > target:
            excess = len(buckets) - target
            for key in list(buckets)[:excess]:
                del buckets[key]
            self.evicted += excess
