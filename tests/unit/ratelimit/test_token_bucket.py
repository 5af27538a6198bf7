"""TokenBucket: one in-process bucket over the same arithmetic as the rate limiter's."""

from __future__ import annotations

import pytest

from link.ratelimit.bucket import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("per_second", "burst"), [(20.0, 20), (5.0, 5), (2.5, 2), (1.0, 1), (0.5, 1), (0.01, 1)])
def test_a_full_bucket_allows_a_second_worth_then_refuses(per_second: float, burst: int) -> None:
    clock = Clock()
    bucket = TokenBucket(per_second, clock=clock)
    assert [bucket.allow() for _ in range(burst + 3)] == [True] * burst + [False] * 3


@pytest.mark.parametrize("per_second", [40.0, 4.0, 0.5])
def test_one_more_token_each_interval(per_second: float) -> None:
    clock = Clock()
    bucket = TokenBucket(per_second, clock=clock)
    while bucket.allow():
        pass
    interval = 1.0 / per_second
    clock.now += interval * 0.5
    assert bucket.allow() is False  # half a token is no token
    clock.now += interval * 0.5
    assert bucket.allow() is True
    assert bucket.allow() is False


def test_a_long_pause_refills_to_the_burst_and_no_more() -> None:
    clock = Clock()
    bucket = TokenBucket(10.0, clock=clock)
    while bucket.allow():
        pass
    clock.now += 3600
    assert sum(bucket.allow() for _ in range(50)) == 10


def test_an_explicit_capacity() -> None:
    clock = Clock()
    bucket = TokenBucket(1.0, capacity=3, clock=clock)
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]


def test_refusing_takes_nothing() -> None:
    clock = Clock()
    bucket = TokenBucket(2.0, clock=clock)
    assert bucket.allow() and bucket.allow()
    for _ in range(100):
        assert bucket.allow() is False  # refusals do not push the refill further away
    clock.now += 0.5
    assert bucket.allow() is True


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_a_rate_that_is_not_positive_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="positive rate"):
        TokenBucket(rate)
