"""Identifiers minted on the request path (decision ids): unique, cheap, not secrets.

``uuid.uuid4()`` reads the kernel's random source on every call (a system call,
several microseconds under load). Decision ids only need to be unique, so they
come from a per-process Mersenne Twister seeded from the kernel, re-seeded in
forked children so two processes never share a sequence.
"""

from __future__ import annotations

import os
import random

__all__ = ["new_id"]

_rng = random.Random(os.urandom(32))


def _reseed() -> None:
    _rng.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """32 lower-case hex digits (the shape of ``uuid4().hex``), 128 random bits."""
    return f"{_rng.getrandbits(128):032x}"
