"""The token bucket, as pure arithmetic on one number.

A bucket of ``capacity`` tokens refilled continuously at one token every
``interval_s`` seconds is fully described by the instant it will be full
again (``full_at``): at time ``now`` it holds
``capacity - max(0, full_at - now) / interval_s`` tokens. Taking a token moves
``full_at`` one interval later. This is the "virtual scheduling" form of the
token bucket (GCRA); keeping a single timestamp instead of (tokens, updated)
makes the Redis script a plain GET/SET and the counting exact: a full bucket
allows exactly ``capacity`` requests at once, then exactly one more per
``interval_s``.

The Redis backend runs the same arithmetic in Lua (see ``link.ratelimit.redis``);
keep the two in step. :class:`TokenBucket` is one such bucket held in process,
for the places that pace themselves (snapshot capture, the snapshot tap).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["EPSILON_S", "Take", "TokenBucket", "take"]

# Float slack for comparisons, far below any meaningful interval (a microsecond
# budget at 1e6 requests per second still has 1000x this).
EPSILON_S = 1e-9


class Take(NamedTuple):
    """The result of trying to take one token from one bucket.

    ``full_at`` is the bucket's new state (unchanged when refused).
    ``remaining`` whole tokens are left after this take; ``reset_s`` is how long
    until the bucket is full again; ``retry_after_s`` (refusals only) is how long
    until a token is available.
    """

    allowed: bool
    full_at: float
    remaining: int
    reset_s: float
    retry_after_s: float


# Take is a NamedTuple, not a frozen dataclass: this runs several times per request and
# a frozen dataclass costs about a microsecond more to build.
def take(full_at: float | None, now: float, interval_s: float, capacity: int) -> Take:
    """Try to take one token at ``now`` from a bucket whose state is ``full_at``.

    ``full_at`` is ``None`` for a bucket never seen (or forgotten because it
    refilled): it is full.
    """
    start = now if full_at is None or full_at < now else full_at
    new_full_at = start + interval_s
    debt = new_full_at - now  # seconds of refill this bucket owes after the take
    window = capacity * interval_s
    if debt > window + EPSILON_S:
        return Take(
            allowed=False,
            full_at=start,
            remaining=0,
            reset_s=start - now,
            retry_after_s=debt - window,
        )
    remaining = int((window - debt) / interval_s + EPSILON_S)  # not negative: int() is floor
    return Take(allowed=True, full_at=new_full_at, remaining=remaining, reset_s=debt, retry_after_s=0.0)


class TokenBucket:
    """One in-process bucket: ``per_second`` tokens a second, a burst of ``capacity`` (default a second's worth).

    Not thread-safe: each user takes from it on one event loop.
    """

    __slots__ = ("_capacity", "_clock", "_full_at", "_interval_s")

    def __init__(self, per_second: float, capacity: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_second <= 0:
            raise ValueError(f"a token bucket needs a positive rate, got {per_second}")
        self._interval_s = 1.0 / per_second
        self._capacity = max(1, int(per_second)) if capacity is None else max(1, capacity)
        self._clock = clock
        self._full_at: float | None = None

    def allow(self) -> bool:
        """Take one token if there is one; False (nothing taken) when the bucket is empty."""
        t = take(self._full_at, self._clock(), self._interval_s, self._capacity)
        if t.allowed:
            self._full_at = t.full_at
        return t.allowed
