"""Error snapshots' Prometheus metrics (on the shared registry).

Updated by the writer thread and the publisher task; ``offer()`` only counts drops.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from link.metrics import REGISTRY

SNAPSHOTS_STORED = Counter(
    "stoa_link_snapshots_stored_total",
    "Error snapshots written to the local store.",
    registry=REGISTRY,
)
SNAPSHOTS_PURGED = Counter(
    "stoa_link_snapshots_purged_total",
    "Error snapshots deleted, by reason (retention, size_cap, admin).",
    ["reason"],
    registry=REGISTRY,
)
SNAPSHOTS_DROPPED = Counter(
    "stoa_link_snapshots_dropped_total",
    "Captured exchanges not stored, by reason (rate_limited, queue_full, too_large, error, closed, "
    "no_request: a tapped local reply without its request).",
    ["reason"],
    registry=REGISTRY,
)
SNAPSHOTS_PUBLISHED = Counter(
    "stoa_link_snapshots_published_total",
    "Error snapshots sent to Kafka, by result (ok, failed, dropped).",
    ["result"],
    registry=REGISTRY,
)
STORE_BYTES = Gauge(
    "stoa_link_snapshots_store_bytes",
    "Total size of the snapshot documents held in the local store.",
    registry=REGISTRY,
)
PII_MASKED = Counter(
    "stoa_link_snapshots_pii_masked_total",
    "Snapshots in which masking replaced something, by kind (email, card, iban, token …).",
    ["kind"],
    registry=REGISTRY,
)
