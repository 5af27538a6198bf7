"""The data plane's core Prometheus metrics, fed from finished requests and decisions.

Both hooks run on the request's own loop and only touch in-memory counters;
label children are bound once (:func:`link.metrics.bound_histogram`) so a hot
path does one dict lookup and one cheap call per metric.
"""

from __future__ import annotations

from typing import Any

from link import metrics
from link.events import RequestOutcome
from link.model import Decision, RequestContext

__all__ = ["DecisionMetrics", "RequestMetrics"]

# Requests that matched no configured route, or carry no tenant, still need a label value.
NO_ROUTE = "unmatched"
NO_TENANT = "none"


class RequestMetrics:
    """An outcome sink: ``stoa_link_requests_total`` and ``stoa_link_request_seconds``."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, str], Any] = {}
        self._seconds: dict[tuple[str, str], Any] = {}

    def offer(self, outcome: RequestOutcome) -> None:
        route = outcome.route or NO_ROUTE
        result = outcome.outcome.value
        key = (route, outcome.tenant or NO_TENANT, result)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = metrics.bound_counter(metrics.REQUESTS, *key)
        counter.inc()
        hkey = (route, result)
        histogram = self._seconds.get(hkey)
        if histogram is None:
            histogram = self._seconds[hkey] = metrics.bound_histogram(metrics.REQUEST_SECONDS, *hkey)
        if outcome.latency_ms >= 0:
            histogram.observe(outcome.latency_ms / 1000.0)


class DecisionMetrics:
    """A decision observer: ``stoa_link_decisions_total``, ``…_decision_seconds``, ``…_phase_seconds``."""

    def __init__(self) -> None:
        self._decisions: dict[tuple[str, str, str], Any] = {}
        self._decision_seconds: dict[str, Any] = {}
        self._phase_seconds: dict[str, Any] = {}

    def observe(self, ctx: RequestContext, decision: Decision) -> None:
        entry = ctx.record.entry or "ext_authz"
        key = (entry, decision.outcome.value, decision.reason or "none")
        counter = self._decisions.get(key)
        if counter is None:
            counter = self._decisions[key] = metrics.bound_counter(metrics.DECISIONS, *key)
        counter.inc()
        total_ns = 0
        for phase, ns in ctx.timings_ns.items():
            total_ns += ns
            histogram = self._phase_seconds.get(phase)
            if histogram is None:
                histogram = self._phase_seconds[phase] = metrics.bound_histogram(metrics.PHASE_SECONDS, phase)
            histogram.observe(ns / 1e9)
        seconds = self._decision_seconds.get(entry)
        if seconds is None:
            seconds = self._decision_seconds[entry] = metrics.bound_histogram(metrics.DECISION_SECONDS, entry)
        seconds.observe(total_ns / 1e9)
