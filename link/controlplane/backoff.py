"""Exponential backoff with jitter, for retrying an unreachable control plane."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from ``initial_s`` up to ``max_s``, with "equal jitter".

    Each delay is drawn from ``[d/2, d]`` where ``d`` is the current exponential
    step: half of it keeps the growth (a fleet of sidecars backs off for real),
    the random half spreads the fleet so it does not retry in lockstep.
    """

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError(f"backoff needs 0 < initial_s <= max_s, got {initial_s}, {max_s}")
        self.initial_s = initial_s
        self.max_s = max_s
        self._rng = rng or random.Random()
        self.attempts = 0

    def step(self, attempt: int) -> float:
        """The un-jittered delay of the ``attempt``-th retry (0-based)."""
        # Cap the exponent so 2**n never overflows on a very long outage.
        return float(min(self.max_s, self.initial_s * 2.0 ** min(attempt, 62)))

    def next_delay(self) -> float:
        """The delay before the next retry; each call counts one failed attempt."""
        d = self.step(self.attempts)
        self.attempts += 1
        return d / 2 + self._rng.uniform(0, d / 2)

    def reset(self) -> None:
        """Start again from ``initial_s`` (after a success)."""
        self.attempts = 0
