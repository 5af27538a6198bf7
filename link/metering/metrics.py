"""Metering's Prometheus metrics (on the shared registry).

Updated from the sink's background task, never from ``offer()``, so the
request path pays nothing for them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from link.metrics import REGISTRY

QUEUE_DEPTH = Gauge(
    "stoa_link_metering_queue_depth",
    "Finished requests waiting in memory to be metered.",
    registry=REGISTRY,
)
SPOOL_BYTES = Gauge(
    "stoa_link_metering_spool_bytes",
    "Bytes of metering events held in the local spool (sent and unsent, until a segment is deleted).",
    registry=REGISTRY,
)
SPOOL_FULL = Gauge(
    "stoa_link_metering_spool_full",
    "1 while the spool is at its size cap and new events are refused.",
    registry=REGISTRY,
)
EVENTS_SENT = Counter(
    "stoa_link_metering_events_sent_total",
    "Metering events acknowledged by the broker, by path (direct or replayed from the spool).",
    ["path"],
    registry=REGISTRY,
)
EVENTS_FAILED = Counter(
    "stoa_link_metering_events_failed_total",
    "Metering events whose send failed or timed out (they are spooled and retried).",
    registry=REGISTRY,
)
EVENTS_SPOOLED = Counter(
    "stoa_link_metering_events_spooled_total",
    "Metering events written to the spool, by reason (broker, overflow, shutdown).",
    ["reason"],
    registry=REGISTRY,
)
EVENTS_DROPPED = Counter(
    "stoa_link_metering_events_dropped_total",
    "Metering events lost, by reason (spool_full, encode_error, closed).",
    ["reason"],
    registry=REGISTRY,
)
SPOOL_CORRUPT = Counter(
    "stoa_link_metering_spool_corrupt_total",
    "Damaged spool records skipped on replay (e.g. a record torn by a crash).",
    registry=REGISTRY,
)
