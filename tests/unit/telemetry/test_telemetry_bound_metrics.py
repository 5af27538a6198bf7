"""Bound metric children: the request path's cheap observe/inc give exactly prometheus_client's values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from link.metrics import LATENCY_BUCKETS, bound_counter, bound_histogram

# Every bucket bound exactly, just above and below it, zero, negative, beyond the last bound.
VALUES = [0.0, -1.0, 1e-9, 99.0, *LATENCY_BUCKETS, *(b * 1.0000001 for b in LATENCY_BUCKETS),
          *(b * 0.9999999 for b in LATENCY_BUCKETS)]


def test_bound_histogram_matches_observe_bucket_for_bucket() -> None:
    registry = CollectorRegistry()
    plain = Histogram("plain_seconds", "x", ["phase"], buckets=LATENCY_BUCKETS, registry=registry)
    fast = Histogram("fast_seconds", "x", ["phase"], buckets=LATENCY_BUCKETS, registry=registry)
    bound = bound_histogram(fast, "policy")
    for value in VALUES:
        plain.labels("policy").observe(value)
        bound.observe(value)
    text = generate_latest(registry).decode()
    plain_lines = sorted(line.replace("plain_", "") for line in text.splitlines()
                         if line.startswith("plain_") and "_created" not in line)
    fast_lines = sorted(line.replace("fast_", "") for line in text.splitlines()
                        if line.startswith("fast_") and "_created" not in line)
    assert plain_lines == fast_lines and len(plain_lines) == len(LATENCY_BUCKETS) + 3  # +Inf, count, sum


def test_bound_counter_adds_to_the_same_child() -> None:
    registry = CollectorRegistry()
    counter = Counter("hits", "x", ["route"], registry=registry)
    bound = bound_counter(counter, "api")
    bound.inc()
    bound.inc(2.5)
    counter.labels("api").inc()
    assert registry.get_sample_value("hits_total", {"route": "api"}) == 4.5
    plain = Counter("plain", "x", registry=registry)
    bound_counter(plain).inc()
    assert registry.get_sample_value("plain_total") == 1.0
