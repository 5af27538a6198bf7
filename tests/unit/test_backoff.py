"""The one backoff helper: growth, cap, jitter bounds, reset, and the inputs it refuses."""

from __future__ import annotations

import random

import pytest

from link.backoff import Backoff


class _Edge(random.Random):
    """An rng that always draws one end of the range, so the jitter bounds are reached exactly."""

    def __init__(self, end: float) -> None:
        super().__init__(0)
        self._end = end

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self._end


@pytest.mark.parametrize(("initial", "maximum", "steps"), [
    (1.0, 4.0, [1.0, 2.0, 4.0, 4.0, 4.0]),
    (0.5, 30.0, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),
    (0.2, 0.2, [0.2, 0.2, 0.2]),
    (0.1, 5.0, [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0]),
])
def test_steps_double_up_to_the_cap(initial: float, maximum: float, steps: list[float]) -> None:
    backoff = Backoff(initial, maximum)
    assert [backoff.step(i) for i in range(len(steps))] == pytest.approx(steps)


@pytest.mark.parametrize("end", [0.0, 1.0])
def test_each_delay_is_between_half_the_step_and_the_step(end: float) -> None:
    backoff = Backoff(1.0, 8.0, _Edge(end))
    delays = [backoff.next_delay() for _ in range(6)]
    steps = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    expected = [s / 2 if end == 0.0 else s for s in steps]
    assert delays == pytest.approx(expected)
    assert backoff.attempts == 6


def test_random_delays_stay_inside_their_step_and_spread() -> None:
    backoff = Backoff(0.5, 30.0, random.Random(7))
    for attempt in range(40):
        step = backoff.step(attempt)
        d = backoff.delay(attempt)
        assert step / 2 <= d <= step
    # Two sidecars failing together do not retry in lockstep.
    a, b = Backoff(1.0, 60.0, random.Random(1)), Backoff(1.0, 60.0, random.Random(2))
    assert [a.next_delay() for _ in range(5)] != [b.next_delay() for _ in range(5)]


def test_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(1.0, 60.0, _Edge(1.0))
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() == 1.0


@pytest.mark.parametrize("attempt", [63, 1000, 10**9])
def test_a_very_long_outage_never_overflows(attempt: int) -> None:
    assert Backoff(0.5, 30.0).step(attempt) == 30.0


def test_a_negative_attempt_is_the_first() -> None:
    assert Backoff(0.5, 30.0).step(-3) == 0.5


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_nonsense_bounds_are_refused(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="0 < initial_s <= max_s"):
        Backoff(initial, maximum)
