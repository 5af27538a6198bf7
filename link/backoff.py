"""Exponential backoff with jitter: the one retry pacing of every background loop.

The control-plane client, the Kubernetes watch and status writer, the JWKS
refresh, the federation reconnect, the snapshot tap and publishers all wait
between failed attempts with :class:`Backoff`, so a fleet of sidecars retrying
a server that went away backs off for real and does not come back in step.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]

# 2.0 ** 62 is still a finite float; beyond it every step is the cap anyway.
_MAX_EXPONENT = 62


class Backoff:
    """Delays that double from ``initial_s`` up to ``max_s``, with "equal jitter".

    Each delay is drawn from ``[d/2, d]`` where ``d`` is the current exponential
    step: half of it keeps the growth (a fleet backs off for real), the random
    half spreads the fleet so it does not retry in lockstep.

    Stateful use: :meth:`next_delay` after each failure, :meth:`reset` after a
    success. Callers that keep the attempt count themselves (one count per queued
    item) use :meth:`delay` with it.
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
        return float(min(self.max_s, self.initial_s * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT)))

    def delay(self, attempt: int) -> float:
        """A jittered delay for the ``attempt``-th retry (0-based), in ``[step/2, step]``."""
        d = self.step(attempt)
        return d / 2 + self._rng.uniform(0, d / 2)

    def next_delay(self) -> float:
        """The delay before the next retry; each call counts one failed attempt."""
        d = self.delay(self.attempts)
        self.attempts += 1
        return d

    def reset(self) -> None:
        """Start again from ``initial_s`` (after a success)."""
        self.attempts = 0
