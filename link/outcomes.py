"""Where a decision becomes what the sinks take: :class:`RequestOutcome` (metering, metrics) and
:class:`Exchange` (error snapshots).

Every entry point builds them here from the typed :class:`~link.model.DecisionRecord`:
the access-log feed (what Envoy observed), ext_proc, the decision shell (a refusal) and
the MCP server (a tool call, a resource read). What Link decided comes from the record;
what happened on the wire comes from the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from link.events import Exchange, HttpMessage, RequestOutcome
from link.model import DecisionRecord, Outcome, Principal, RequestContext
from link.telemetry.propagation import trace_id_of

if TYPE_CHECKING:
    from link.model import Decision
    from link.pipeline import PipelineResult

__all__ = ["decided_outcome", "final_outcome", "refusal_exchange", "request_outcome", "response_exchange",
           "unknown_entry_outcome"]

# Outcome values -> members (the Enum call costs more than a lookup).
_OUTCOMES = {o.value: o for o in Outcome}


def decided_outcome(record: DecisionRecord) -> Outcome:
    """The outcome Link decided (success when the record has none)."""
    return _OUTCOMES.get(record.outcome, Outcome.ERROR) if record.outcome else Outcome.SUCCESS


def final_outcome(record: DecisionRecord, status: int) -> Outcome:
    """Link's outcome, corrected by what actually happened upstream."""
    outcome = decided_outcome(record)
    if outcome is Outcome.SUCCESS:
        if status >= 500 or status == 0:
            return Outcome.ERROR
        if status == 404:
            return Outcome.NOT_FOUND
    return outcome


def request_outcome(
    record: DecisionRecord, *, request_id: str, timestamp: float, method: str, path: str, http_status: int,
    outcome: Outcome, source: str, trace_id: str = "", latency_ms: float = 0.0, t_gateway_ms: float = 0.0,
    t_backend_ms: float = 0.0, request_size_bytes: int = 0, response_size_bytes: int = 0, **observed: Any,
) -> RequestOutcome:
    """One finished request: the record's fields, then what the caller observed (the wire figures, and
    ``observed`` overriding any other of :class:`RequestOutcome`'s fields, e.g. a tenant known otherwise)."""
    event = RequestOutcome(
        request_id=request_id, timestamp=timestamp, method=method, path=path, http_status=http_status,
        outcome=outcome, decision_id=record.decision_id, reason=record.reason, tenant=record.tenant,
        consumer=record.consumer, subject=record.subject, credential=record.credential, route=record.route,
        route_template=record.route_template, api=record.api, tool=record.tool, scopes=list(record.scopes),
        roles=list(record.roles), t_link_ms=record.t_link_us / 1000.0, trace_id=record.trace_id or trace_id,
        source=source, latency_ms=latency_ms, t_gateway_ms=t_gateway_ms, t_backend_ms=t_backend_ms,
        request_size_bytes=request_size_bytes, response_size_bytes=response_size_bytes,
    )
    for name, value in observed.items():
        setattr(event, name, value)
    return event


def unknown_entry_outcome(
    principal: Principal, *, request_id: str, timestamp: float, path: str, reason: str, name: str,
    latency_ms: float, request_size_bytes: int, trace_id: str, source: str = "mcp",
) -> RequestOutcome:
    """A call of an entry (tool, resource, prompt) the caller has none of: no decision was taken,
    so the outcome carries the caller as authenticated and the name as asked (capped)."""
    return RequestOutcome(
        request_id=request_id, timestamp=timestamp, method="POST", path=path, http_status=404,
        outcome=Outcome.NOT_FOUND, reason=reason, tenant=principal.tenant, consumer=principal.consumer,
        subject=principal.subject, credential=principal.kind.value, tool=name[:256],
        scopes=sorted(principal.scopes), roles=sorted(principal.roles), latency_ms=latency_ms,
        t_gateway_ms=latency_ms, request_size_bytes=request_size_bytes, trace_id=trace_id, source=source,
    )


def _refusal_headers(decision: Decision) -> dict[str, str]:
    if not decision.policy_response:
        return {**decision.response_headers, "content-type": decision.content_type}
    headers = dict(decision.response_headers)
    for key, value in decision.policy.response_headers if decision.policy is not None else ():
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def refusal_exchange(result: PipelineResult, body_cap: int) -> Exchange:
    """A request Link refused, as an exchange for error snapshots (it never reached the upstream)."""
    ctx, decision = result.ctx, result.decision
    req = ctx.request
    route = ctx.route
    body = req.body or b""
    return Exchange(
        request_id=req.request_id,
        timestamp=req.received_at,
        method=req.method,
        path=req.path + (f"?{req.query}" if req.query else ""),
        status=decision.http_status,
        request=HttpMessage(headers=dict(req.headers), body=body[:body_cap],
                            body_truncated=len(body) > body_cap or req.body_truncated),
        response=HttpMessage(headers=_refusal_headers(decision), body=(decision.body or b"")[:body_cap],
                             body_truncated=len(decision.body or b"") > body_cap),
        tenant=ctx.principal.tenant or (route.tenant or "" if route else ""),
        consumer=ctx.principal.consumer,
        subject=ctx.principal.subject,
        route=route.name if route else "",
        api=(route.api or route.name) if route else "",
        tool=req.tool_name or "",
        trace_id=trace_id_of(req.headers.get("traceparent", "")),
        decision_id=ctx.decision_id,
        outcome=decision.outcome,
        reason=decision.reason,
        scopes=sorted(ctx.principal.scopes),
        roles=sorted(ctx.principal.roles),
        timing_ms={name: ns / 1e6 for name, ns in ctx.timings_ns.items()},
    )


def response_exchange(ctx: RequestContext, record: DecisionRecord, *, status: int, started: float,
                      request: HttpMessage, response: HttpMessage, upstream_ns: int = 0) -> Exchange:
    """An exchange whose response came back through Envoy (ext_proc saw both sides)."""
    req = ctx.request
    route = ctx.route
    timing = {name: ns / 1e6 for name, ns in ctx.timings_ns.items()}
    if upstream_ns:
        timing["upstream"] = upstream_ns / 1e6
    return Exchange(
        request_id=req.request_id,
        timestamp=started,
        method=req.method,
        path=req.path + (f"?{req.query}" if req.query else ""),
        status=status,
        request=request,
        response=response,
        tenant=ctx.principal.tenant or record.tenant,
        consumer=ctx.principal.consumer or record.consumer,
        subject=ctx.principal.subject or record.subject,
        route=route.name if route else "",
        api=(route.api or route.name) if route else "",
        tool=req.tool_name or "",
        trace_id=record.trace_id
        or trace_id_of(req.context.get("traceparent", "") or req.headers.get("traceparent", "")),
        decision_id=ctx.decision_id or record.decision_id,
        outcome=decided_outcome(record) if status < 500 else Outcome.ERROR,
        reason=record.reason,
        scopes=sorted(ctx.principal.scopes) or list(record.scopes),
        roles=sorted(ctx.principal.roles) or list(record.roles),
        timing_ms=timing,
    )
