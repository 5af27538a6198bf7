"""The RateLimit response headers (IETF httpapi draft) and Retry-After."""

from __future__ import annotations

import math

from link.ratelimit.verdict import Verdict

__all__ = ["rate_limit_headers"]


def _seconds(value: float) -> str:
    return str(max(0, math.ceil(value - 1e-9)))


def rate_limit_headers(verdict: Verdict) -> dict[str, str]:
    """Headers telling the client its budget in the bucket the verdict reports.

    ``RateLimit-Limit`` is the bucket's capacity (the most a client may send at
    once, burst included), so ``Remaining`` never exceeds it; the sustained rate
    is in ``RateLimit-Policy`` (``N;w=SECONDS``). ``RateLimit-Reset`` is the
    number of seconds until the bucket is full again.
    """
    lim = verdict.limit
    headers = {
        "ratelimit-limit": str(lim.capacity),
        "ratelimit-remaining": str(verdict.remaining),
        "ratelimit-reset": _seconds(verdict.reset_s),
        "ratelimit-policy": f"{lim.rate.limit};w={_seconds(lim.rate.period_s)}",
    }
    if not verdict.allowed:
        # At least one second: "0" would invite an immediate retry that is refused again.
        headers["retry-after"] = str(max(1, math.ceil(verdict.retry_after_s - 1e-9)))
    return headers
