"""Prometheus metrics of the control-plane client."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from link.metrics import REGISTRY

REGISTERED = Gauge(
    "stoa_link_controlplane_registered",
    "1 while this instance is registered with the STOA control plane.",
    registry=REGISTRY,
)
REGISTRATIONS = Counter(
    "stoa_link_controlplane_registrations",
    "Registration attempts, by result (ok, unauthorized, error, unreachable).",
    ["result"],
    registry=REGISTRY,
)
HEARTBEATS = Counter(
    "stoa_link_controlplane_heartbeats",
    "Heartbeats sent, by result (ok, not_found, unauthorized, error, unreachable).",
    ["result"],
    registry=REGISTRY,
)
