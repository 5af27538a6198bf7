"""Rate limiting: token buckets per tenant, consumer and route, in process or in Redis.

``link.pipeline.ratelimit`` is the phase that uses these parts:
:class:`LimitSelector` picks a request's buckets, :class:`LocalLimiter` or
:class:`RedisBuckets` takes a token from each, and :func:`rate_limit_headers`
tells the client its budget.
"""

from link.ratelimit.bucket import Take, take
from link.ratelimit.headers import rate_limit_headers
from link.ratelimit.keys import Limit, LimitSelector
from link.ratelimit.local import LocalLimiter
from link.ratelimit.redis import BackendUnavailable, RedisBuckets
from link.ratelimit.verdict import Verdict, summarize

__all__ = [
    "BackendUnavailable",
    "Limit",
    "LimitSelector",
    "LocalLimiter",
    "RedisBuckets",
    "Take",
    "Verdict",
    "rate_limit_headers",
    "summarize",
    "take",
]
