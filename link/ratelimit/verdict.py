"""The answer of a rate-limit check, summarised over all buckets of a request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from link.ratelimit.bucket import Take
from link.ratelimit.keys import Limit

__all__ = ["Verdict", "summarize"]


@dataclass(frozen=True, slots=True)
class Verdict:
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
    worst: tuple[Limit, Take] | None = None
    for limit, t in zip(limits, takes, strict=True):
        if t.allowed:
            continue
        if worst is None or t.retry_after_s > worst[1].retry_after_s:
            worst = (limit, t)
    if worst is not None:
        limit, t = worst
        return Verdict(False, limit, 0, t.reset_s, t.retry_after_s)
    tightest = min(range(len(takes)), key=lambda i: (takes[i].remaining, -takes[i].reset_s))
    t = takes[tightest]
    return Verdict(True, limits[tightest], t.remaining, t.reset_s)
