"""RateLimit-* and Retry-After headers."""

from __future__ import annotations

from link.ratelimit.headers import rate_limit_headers
from link.ratelimit.keys import Limit
from link.ratelimit.verdict import Verdict
from link.rates import Rate

LIMIT = Limit("route", "{a}:r:x", Rate(10, 1.0), 20)


def test_allowed_headers_round_seconds_up() -> None:
    h = rate_limit_headers(Verdict(True, LIMIT, remaining=19, reset_s=0.1))
    assert h == {"ratelimit-limit": "20", "ratelimit-remaining": "19", "ratelimit-reset": "1",
                 "ratelimit-policy": "10;w=1"}


def test_retry_after_is_at_least_one_second() -> None:
    h = rate_limit_headers(Verdict(False, LIMIT, remaining=0, reset_s=2.0, retry_after_s=0.05))
    assert h["retry-after"] == "1"
    assert h["ratelimit-reset"] == "2"
    h = rate_limit_headers(Verdict(False, LIMIT, remaining=0, reset_s=2.0, retry_after_s=7.2))
    assert h["retry-after"] == "8"
