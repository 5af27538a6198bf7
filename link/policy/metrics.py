"""Prometheus metrics of the policy phase (registered on link.metrics.REGISTRY)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from link.metrics import LATENCY_BUCKETS, REGISTRY

__all__ = [
    "DECISIONS",
    "DECISION_LOG_DROPPED",
    "EVAL_SECONDS",
    "LAST_LOAD_SUCCESS",
    "LOADED_AT",
    "RELOADS",
]

DECISIONS = Counter(
    "stoa_link_policy_decisions_total",
    "Policy decisions by result: allow, deny, error, dry_run_deny (would have been refused), unavailable.",
    ["engine", "result"],
    registry=REGISTRY,
)
EVAL_SECONDS = Histogram(
    "stoa_link_policy_eval_seconds",
    "Time to evaluate the policy for one request (cache hits included).",
    ["engine"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
RELOADS = Counter(
    "stoa_link_policy_reloads_total",
    "Policy loads by result (success, failure); a failure keeps the last good policy.",
    ["result"],
    registry=REGISTRY,
)
LAST_LOAD_SUCCESS = Gauge(
    "stoa_link_policy_last_load_success",
    "1 when the last attempt to load the policies succeeded, 0 when it failed.",
    registry=REGISTRY,
)
LOADED_AT = Gauge(
    "stoa_link_policy_loaded_timestamp_seconds",
    "When the policy in force was loaded (epoch seconds).",
    registry=REGISTRY,
)
DECISION_LOG_DROPPED = Counter(
    "stoa_link_policy_decision_log_dropped_total",
    "Decision-log entries dropped because the writer fell behind.",
    registry=REGISTRY,
)
