"""In-process buckets: all or nothing, exact counts, bounded memory."""

from __future__ import annotations

from link.ratelimit.keys import Limit
from link.ratelimit.local import LocalLimiter
from link.rates import Rate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lim(key: str, limit: int, period_s: float = 60.0, capacity: int | None = None,
        scope: str = "tenant") -> Limit:
    return Limit(scope, key, Rate(limit, period_s), capacity or limit)  # type: ignore[arg-type]


def test_two_tenants_get_exactly_their_own_budget_per_window() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock=clock)
    acme, globex = [lim("{acme}:t", 5)], [lim("{globex}:t", 3)]
    for _window in range(3):
        counts = {"acme": 0, "globex": 0}
        for _ in range(20):  # interleaved, as concurrent traffic would be
            counts["acme"] += limiter.take(acme).allowed
            counts["globex"] += limiter.take(globex).allowed
        assert counts == {"acme": 5, "globex": 3}
        clock.now += 60.0  # one full period refills both


def test_a_refused_request_spends_nothing() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock=clock)
    tenant, route = lim("{a}:t", 10), lim("{a}:r:x", 2, scope="route")
    assert [limiter.take([tenant, route]).allowed for _ in range(4)] == [True, True, False, False]
    # The tenant bucket paid only for the two allowed requests.
    assert limiter.take([tenant]).remaining == 7


def test_the_verdict_reports_the_tightest_bucket() -> None:
    limiter = LocalLimiter(clock=Clock())
    tenant, consumer = lim("{a}:t", 100), lim("{a}:c:x", 3, scope="consumer")
    v = limiter.take([tenant, consumer])
    assert (v.allowed, v.limit.scope, v.remaining) == (True, "consumer", 2)
    limiter.take([tenant, consumer])
    limiter.take([tenant, consumer])
    refused = limiter.take([tenant, consumer])
    assert (refused.allowed, refused.limit.scope, refused.retry_after_s) == (False, "consumer", 20.0)


def test_full_buckets_are_forgotten_first_and_memory_stays_bounded() -> None:
    clock = Clock()
    limiter = LocalLimiter(max_buckets=100, clock=clock)
    hot = lim("hot", 2, period_s=3600)
    limiter.take([hot])
    for i in range(99):
        limiter.take([lim(f"idle-{i}", 10, period_s=1)])
    clock.now += 5  # the idle buckets refill, the hot one does not
    for i in range(50):
        limiter.take([lim(f"new-{i}", 10, period_s=1)])
    assert len(limiter) <= 100
    assert limiter.evicted == 0  # only full buckets were dropped
    assert limiter.take([hot]).remaining == 0  # and the hot one kept its state


def test_when_nothing_is_full_the_oldest_go_and_are_counted() -> None:
    limiter = LocalLimiter(max_buckets=100, clock=Clock())
    for i in range(101):
        limiter.take([lim(f"k{i}", 1, period_s=3600)])
    assert len(limiter) == 90
    assert limiter.evicted == 11
