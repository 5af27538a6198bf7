"""Link's decision as a span, and the trace context the upstream request carries.

Two shapes, depending on who else traces:

- Envoy traces (its ext_authz span arrives as the gRPC call's trace context):
  Envoy's own span is the request's server span; Link records an INTERNAL
  ``stoa.decision`` child of Envoy's ext_authz span. Envoy's router puts its
  own ``traceparent`` on the upstream request, in the same trace.
- Envoy does not trace: Link's span *is* the server span (``GET /orders/{id}``),
  child of the client's ``traceparent`` if one came, else the root of a new
  trace; Link puts its ``traceparent`` on the upstream request so the primary
  gateway and the backends join the trace.

The span covers the decision (from when the request reached Link to now); its
timestamps are wall-clock, derived from ``Request.received_at`` and the
monotonic clock, so they line up with Envoy's.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from link.model import Decision, RequestContext
from link.telemetry.propagation import format_traceparent, parent_carrier

__all__ = ["DecisionTracer"]

_PROPAGATOR = TraceContextTextMapPropagator()


def _protocol_version(protocol: str) -> str | None:
    # Envoy reports "HTTP/1.1", "HTTP/2", "HTTP/3"; semantic conventions want "1.1", "2", "3".
    if protocol.upper().startswith("HTTP/"):
        return protocol[5:]
    return None


class DecisionTracer:
    """A decision observer (``Pipeline.add_observer``) that records one span per decision."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def observe(self, ctx: RequestContext, decision: Decision) -> None:
        req = ctx.request
        carrier, from_envoy = parent_carrier(req)
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        route = ctx.route
        template = (route.template or route.name) if route is not None else None
        if from_envoy:
            name, kind = "stoa.decision", SpanKind.INTERNAL
        else:
            name, kind = (f"{req.method} {template}" if template else req.method), SpanKind.SERVER
        elapsed_ns = max(0, time.perf_counter_ns() - req.received_ns)
        start_ns = int(req.received_at * 1e9)
        span = self._tracer.start_span(name, context=parent, kind=kind, start_time=start_ns)
        if span.is_recording():  # attributes cost more than the span: only for sampled requests
            span.set_attributes(_attributes(ctx, decision, template))
            if decision.http_status >= 500:
                span.set_status(Status(StatusCode.ERROR, decision.reason or None))
        span.end(end_time=start_ns + elapsed_ns)

        sc = span.get_span_context()
        if not sc.is_valid:
            return
        record = decision.record
        record.trace_id = f"{sc.trace_id:032x}"
        record.decision = "allow" if decision.allowed else "deny"
        if decision.allowed and not from_envoy:
            # Envoy is not tracing: nobody else will give the upstream a trace context.
            decision.upstream_headers["traceparent"] = format_traceparent(sc.trace_id, sc.span_id,
                                                                           int(sc.trace_flags))
            if carrier.get("tracestate"):
                decision.upstream_headers["tracestate"] = carrier["tracestate"]


def _attributes(ctx: RequestContext, decision: Decision, template: str | None) -> dict[str, Any]:
    """Semantic-convention HTTP attributes plus Link's ``stoa.*``; absent values are left out."""
    req = ctx.request
    record = decision.record
    route = ctx.route
    attributes: dict[str, Any] = {
        "http.request.method": req.method,
        "url.path": req.path,
        "url.scheme": req.scheme,
        "stoa.decision": "allow" if decision.allowed else "deny",
        "stoa.outcome": decision.outcome.value,
        "stoa.entry": ctx.record.entry or "ext_authz",
    }
    optional = {
        "http.route": template,
        "server.address": req.host or None,
        "client.address": req.source_address or None,
        "network.protocol.version": _protocol_version(req.protocol),
        "user_agent.original": req.headers.get("user-agent"),
        "stoa.tenant": record.tenant or None,
        "stoa.consumer": record.consumer or None,
        "stoa.tool": req.tool_name or record.tool or None,
        "stoa.route": route.name if route is not None else None,
        "stoa.reason": decision.reason or None,
        "stoa.decision_id": ctx.decision_id or None,
        "stoa.request_id": req.request_id or None,
    }
    attributes.update({k: v for k, v in optional.items() if v is not None})
    if not decision.allowed:
        # Link answered the client itself: this is the response status.
        attributes["http.response.status_code"] = decision.http_status
    # One attribute for all phases ("identity=0.012 policy=0.080 …", milliseconds): cheaper than one each.
    attributes["stoa.phases_ms"] = " ".join(f"{p}={ns / 1e6:.3f}" for p, ns in ctx.timings_ns.items())
    return attributes
