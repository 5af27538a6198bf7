"""Telemetry: Prometheus metrics of requests and decisions, and OpenTelemetry traces.

``install(app)`` always adds the metrics hooks (an outcome sink and a decision
observer); with ``tracing.enabled`` it also adds the tracer provider (a
component that flushes on stop) and the decision-span observer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from link.telemetry.decision_span import DecisionTracer
from link.telemetry.envoy_tracing import ENVOY_SPAN_OPERATION, ENVOY_SPAN_TAGS, envoy_random_sampling_percent
from link.telemetry.metrics import DecisionMetrics, RequestMetrics
from link.telemetry.propagation import parse_traceparent, trace_context_from_metadata
from link.telemetry.tracing import (
    TracingComponent,
    build_tracer_provider,
    observed_otlp_exporter,
    otlp_endpoint_of,
)

if TYPE_CHECKING:
    from link.app import LinkApp

__all__ = [
    "ENVOY_SPAN_OPERATION",
    "ENVOY_SPAN_TAGS",
    "DecisionMetrics",
    "DecisionTracer",
    "RequestMetrics",
    "TracingComponent",
    "build_tracer_provider",
    "envoy_random_sampling_percent",
    "install",
    "parse_traceparent",
    "trace_context_from_metadata",
]

TRACER_NAME = "stoa.link"


def install(app: LinkApp) -> None:
    """Add the metrics hooks, and tracing when enabled."""
    app.add_outcome_sink(RequestMetrics())
    app.pipeline.add_observer(DecisionMetrics())
    tracing = app.settings.tracing
    if not tracing.enabled:
        return
    exporter = observed_otlp_exporter(tracing)
    provider = build_tracer_provider(tracing, exporter)
    app.pipeline.add_observer(DecisionTracer(provider.get_tracer(TRACER_NAME)))
    endpoint = otlp_endpoint_of(tracing)
    app.add_component(TracingComponent(provider, endpoint.describe() if endpoint else "the SDK's default endpoint",
                                       exporter=exporter))
    app.extras["tracer_provider"] = provider
