"""The decision span: parents, kinds, attributes, and the traceparent the upstream gets."""

from __future__ import annotations

import re
import time

from opentelemetry.trace import SpanKind, StatusCode

from link.telemetry import parse_traceparent
from tests.unit.telemetry.support import TracedApp, request

CLIENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ENVOY = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"


async def test_no_incoming_trace_starts_one_and_hands_it_upstream() -> None:
    t = TracedApp()
    before = time.time_ns()
    decision = (await t.app.pipeline.run(request("/public/42"))).decision
    assert decision.allowed
    [span] = t.spans()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /public/{item}"
    assert span.parent is None
    tp = parse_traceparent(decision.upstream_headers["traceparent"])
    assert tp is not None and tp.sampled
    assert tp.trace_id == f"{span.context.trace_id:032x}"
    assert tp.span_id == f"{span.context.span_id:016x}"  # the upstream is a child of Link's span
    assert decision.record.trace_id == tp.trace_id
    assert decision.record.decision == "allow"
    assert span.start_time is not None and span.end_time is not None
    assert before - 50_000_000 <= span.start_time <= span.end_time <= time.time_ns() + 50_000_000


async def test_client_traceparent_is_continued() -> None:
    t = TracedApp()
    decision = (await t.app.pipeline.run(request("/public/1", {"traceparent": CLIENT, "tracestate": "k=v"}))).decision
    [span] = t.spans()
    assert span.kind is SpanKind.SERVER
    assert f"{span.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "b7ad6b7169203331"
    tp = parse_traceparent(decision.upstream_headers["traceparent"])
    assert tp is not None and tp.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert decision.upstream_headers["tracestate"] == "k=v"


async def test_envoy_span_from_grpc_metadata_is_the_parent() -> None:
    t = TracedApp()
    req = request("/public/1", {"traceparent": CLIENT})
    req.context["traceparent"] = ENVOY
    decision = (await t.app.pipeline.run(req)).decision
    [span] = t.spans()
    assert span.kind is SpanKind.INTERNAL
    assert span.name == "stoa.decision"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
    # Envoy's router sets the upstream traceparent itself.
    assert "traceparent" not in decision.upstream_headers
    assert decision.record.trace_id == "0af7651916cd43dd8448eb211c80319c"


async def test_attributes() -> None:
    t = TracedApp()
    req = request("/public/42", {"x-request-id": "rid-1"}, protocol="HTTP/2", tool_name="get-invoice")
    await t.app.pipeline.run(req)
    [span] = t.spans()
    a = dict(span.attributes or {})
    assert a["http.request.method"] == "GET"
    assert a["url.path"] == "/public/42"
    assert a["url.scheme"] == "http"
    assert a["http.route"] == "/public/{item}"
    assert a["server.address"] == "api.local"
    assert a["client.address"] == "10.0.0.7"
    assert a["network.protocol.version"] == "2"
    assert a["user_agent.original"] == "pytest"
    assert a["stoa.tenant"] == "demo"
    assert a["stoa.consumer"] == "anonymous"
    assert a["stoa.decision"] == "allow"
    assert a["stoa.outcome"] == "success"
    assert a["stoa.tool"] == "get-invoice"
    assert a["stoa.route"] == "public"
    assert a["stoa.request_id"] == "rid-1"
    assert a["stoa.entry"] == "ext_authz"
    assert re.fullmatch(r"identity=\d+\.\d{3} .*response=\d+\.\d{3}", a["stoa.phases_ms"])
    assert "http.response.status_code" not in a  # the upstream answers allowed requests


async def test_denial_carries_status_and_no_upstream_header() -> None:
    t = TracedApp()
    decision = (await t.app.pipeline.run(request("/private/x"))).decision
    assert not decision.allowed and decision.http_status == 401
    [span] = t.spans()
    a = dict(span.attributes or {})
    assert a["stoa.decision"] == "deny"
    assert a["stoa.outcome"] == "unauthenticated"
    assert a["http.response.status_code"] == 401
    assert span.status.status_code is StatusCode.UNSET  # a 4xx is the client's error, not the server's
    assert "traceparent" not in decision.upstream_headers


async def test_unsampled_requests_still_propagate() -> None:
    t = TracedApp(ratio=0.0)
    decision = (await t.app.pipeline.run(request("/public/1"))).decision
    assert t.spans() == []
    tp = parse_traceparent(decision.upstream_headers["traceparent"])
    assert tp is not None and not tp.sampled
    # Parent-based: a sampled caller keeps its request sampled even at ratio 0.
    await t.app.pipeline.run(request("/public/1", {"traceparent": CLIENT}))
    assert len(t.spans()) == 1


async def test_malformed_traceparent_starts_a_new_trace() -> None:
    t = TracedApp()
    bad = "00-00000000000000000000000000000000-b7ad6b7169203331-01"
    decision = (await t.app.pipeline.run(request("/public/1", {"traceparent": bad}))).decision
    [span] = t.spans()
    assert span.parent is None
    assert decision.upstream_headers["traceparent"] != bad
