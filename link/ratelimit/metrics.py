"""Rate-limit metrics, registered on Link's registry.

Allowed local checks are not counted here: ``stoa_link_decisions_total`` already
counts every decision, and a counter increment is a tenth of a local check.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from link.metrics import REGISTRY

LIMITED = Counter(
    "stoa_link_ratelimit_limited_total",
    "Requests refused by a rate limit, by the scope of the bucket that refused (tenant, consumer, route).",
    ["scope"],
    registry=REGISTRY,
)
REDIS_CHECKS = Counter(
    "stoa_link_ratelimit_redis_checks_total",
    "Checks in Redis mode, by result: allowed, limited (Redis answered); while Redis was unavailable "
    "fallback_allowed, fallback_limited (local buckets), skipped (allowed unchecked), refused (503).",
    ["result"],
    registry=REGISTRY,
)
REDIS_ERRORS = Counter(
    "stoa_link_ratelimit_redis_errors_total",
    "Redis checks that failed, by kind (timeout, connection, error).",
    ["kind"],
    registry=REGISTRY,
)
REDIS_UP = Gauge(
    "stoa_link_ratelimit_redis_up",
    "1 while checks go to Redis; 0 while the circuit skips it after a failure.",
    registry=REGISTRY,
)
LOCAL_EVICTIONS = Counter(
    "stoa_link_ratelimit_local_evictions_total",
    "In-process buckets dropped before they refilled because of local_max_buckets.",
    registry=REGISTRY,
)
