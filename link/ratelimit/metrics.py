"""Rate-limit metrics, registered on Link's registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from link.metrics import REGISTRY

CHECKS = Counter(
    "stoa_link_ratelimit_checks_total",
    "Rate-limit checks by the backend that answered (local, redis, fallback, skipped, refused) and result.",
    ["backend", "result"],
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
