"""The answer of a rate-limit check, summarised over all buckets of a request."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from link.ratelimit.bucket import Take
from link.ratelimit.keys import Limit

__all__ = ["Verdict", "summarize"]


class Verdict(NamedTuple):
    """Allowed or not, and the bucket the client should hear about.

    On a refusal that is the refusing bucket that frees up last; on an allowed
    request it is the bucket with the least budget left.
    """

    allowed: bool
    limit: Limit
    remaining: int
    reset_s: float
    retry_after_s: float = 0.0


def summarize(limits: Sequence[Limit], takes: Sequence[Take]) -> Verdict:
    """Fold one :class:`Take` per limit into the request's verdict (``limits`` is not empty)."""
    # One plain pass: this runs on every request (min() with a key function costs twice as much).
    worst: Take | None = None
    worst_i = 0
    best: Take | None = None
    best_i = 0
    for i, t in enumerate(takes):
        if not t.allowed:
            if worst is None or t.retry_after_s > worst.retry_after_s:
                worst, worst_i = t, i
        elif best is None or t.remaining < best.remaining or (
            t.remaining == best.remaining and t.reset_s > best.reset_s
        ):
            best, best_i = t, i
    if worst is not None:
        return Verdict(False, limits[worst_i], 0, worst.reset_s, worst.retry_after_s)
    assert best is not None
    return Verdict(True, limits[best_i], best.remaining, best.reset_s)
