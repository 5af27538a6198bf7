"""The request counters a heartbeat reports, read from Link's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter

from link.metrics import DECISIONS, REQUESTS


def _sum(counter: Counter, *, label: str = "", keep: frozenset[str] | None = None,
         drop: frozenset[str] | None = None) -> int:
    """Sum a counter's ``_total`` samples, optionally filtered on one label's value."""
    total = 0.0
    for family in counter.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue  # skip the _created timestamps
            value = sample.labels.get(label, "") if label else ""
            if keep is not None and value not in keep:
                continue
            if drop is not None and value in drop:
                continue
            total += sample.value
    return int(total)


def request_counters() -> dict[str, int]:
    """Cumulative counters since start-up.

    ``requests_total`` counts every request Link decided on (ext_authz checks and
    MCP calls); ``requests_denied`` those it refused; ``requests_finished`` and
    ``errors_total`` come from the finished-request feed (Envoy's access log).
    """
    return {
        "requests_total": _sum(DECISIONS),
        "requests_denied": _sum(DECISIONS, label="outcome", drop=frozenset({"success"})),
        "requests_finished": _sum(REQUESTS),
        "errors_total": _sum(REQUESTS, label="outcome", keep=frozenset({"error"})),
    }
