"""The token bucket arithmetic, against an exact reference model."""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from link.ratelimit.bucket import take


def drain(capacity: int, interval: float, now: float, n: int, full_at: float | None = None) -> list[bool]:
    out = []
    for _ in range(n):
        t = take(full_at, now, interval, capacity)
        if t.allowed:
            full_at = t.full_at
        out.append(t.allowed)
    return out


def test_a_full_bucket_allows_exactly_its_capacity_at_once() -> None:
    assert drain(capacity=5, interval=12.0, now=1000.0, n=8) == [True] * 5 + [False] * 3


def test_remaining_counts_down_and_reset_is_time_until_full() -> None:
    full_at = None
    seen = []
    for _ in range(3):
        t = take(full_at, 50.0, 2.0, 3)
        full_at = t.full_at
        seen.append((t.remaining, t.reset_s))
    assert seen == [(2, 2.0), (1, 4.0), (0, 6.0)]


def test_a_refusal_says_when_the_next_token_comes_and_keeps_the_state() -> None:
    full_at = None
    for _ in range(2):
        full_at = take(full_at, 10.0, 3.0, 2).full_at
    refused = take(full_at, 11.0, 3.0, 2)
    assert not refused.allowed
    assert refused.full_at == full_at  # nothing spent
    assert refused.retry_after_s == 2.0  # the first token comes back at 13.0
    assert refused.reset_s == 5.0  # full again at 16.0
    assert not take(full_at, 12.99, 3.0, 2).allowed
    assert take(full_at, 13.0, 3.0, 2).allowed


def test_refill_is_continuous_one_token_per_interval() -> None:
    full_at = None
    for _ in range(4):
        full_at = take(full_at, 0.0, 0.5, 4).full_at
    assert full_at == 2.0
    # 1.6 s later 3 whole tokens are back (3.2 intervals), not 4.
    allowed = drain(4, 0.5, 1.6, 5, full_at)
    assert allowed == [True, True, True, False, False]


def test_an_idle_bucket_never_holds_more_than_its_capacity() -> None:
    full_at = take(None, 0.0, 1.0, 3).full_at
    assert drain(3, 1.0, 1_000_000.0, 5, full_at) == [True, True, True, False, False]


def _reference(times_ms: list[int], limit: int, period_s: int, capacity: int) -> list[bool]:
    """A classic (tokens, last) bucket in exact rational arithmetic."""
    rate = Fraction(limit, period_s) / 1000  # tokens per ms
    tokens, last = Fraction(capacity), 0
    out = []
    for t in times_ms:
        tokens = min(Fraction(capacity), tokens + (t - last) * rate)
        last = t
        if tokens >= 1:
            tokens -= 1
            out.append(True)
        else:
            out.append(False)
    return out


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 50),
    period_s=st.sampled_from([1, 60, 3600]),
    burst=st.integers(1, 4),
    gaps_ms=st.lists(st.integers(0, 5_000), min_size=1, max_size=80),
)
def test_matches_an_exact_token_bucket(limit: int, period_s: int, burst: int, gaps_ms: list[int]) -> None:
    capacity = limit * burst
    times, now = [], 0
    for gap in gaps_ms:
        now += gap
        times.append(now)
    interval = period_s / limit
    full_at: float | None = None
    got = []
    for t_ms in times:
        t = take(full_at, t_ms / 1000, interval, capacity)
        if t.allowed:
            full_at = t.full_at
            tokens_left = capacity - (t.full_at - t_ms / 1000) / interval
            assert t.remaining == math.floor(tokens_left + 1e-9)
        got.append(t.allowed)
    assert got == _reference(times, limit, period_s, capacity)
