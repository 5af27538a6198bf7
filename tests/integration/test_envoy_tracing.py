"""Traces through the real Envoy: spans at a test OTLP receiver, the same trace at the upstream.

Two set-ups:

- Envoy does not trace: Link's decision span is the request's server span, and Link
  gives the upstream the ``traceparent``.
- Envoy traces (OpenTelemetry tracer, span tags from ``link.telemetry.ENVOY_SPAN_TAGS``):
  Envoy's span is the server span; Link's decision is a child in the same trace.
"""

from __future__ import annotations

import re

import httpx
import pytest

from link.envoyconf import EnvoyOptions, build_bootstrap, render_yaml
from link.telemetry import parse_traceparent
from tests.harness.envoy import EnvoyProcess
from tests.harness.link_server import LinkThread, link_settings
from tests.harness.otlp import OtlpReceiver, ReceivedSpan
from tests.harness.procs import free_port
from tests.harness.upstream import EchoUpstream

pytestmark = pytest.mark.integration

ROUTES = [
    {"name": "invoices", "template": "/invoices/{id}", "anonymous": True, "tenant": "acme"},
    {"name": "private", "prefix": "/private"},
]
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"


class Stack:
    """Echo upstream + Link (tracing to the receiver) + Envoy, optionally tracing too."""

    def __init__(self, receiver: OtlpReceiver, envoy_traces: bool) -> None:
        self.receiver = receiver
        self.upstream = EchoUpstream()
        self.link = LinkThread(link_settings(
            {"tracing.enabled": True, "tracing.otlp_endpoint": receiver.endpoint,
             "tracing.service_name": "stoa-link"}, ROUTES))
        self.envoy_traces = envoy_traces
        self.envoy: EnvoyProcess | None = None

    def __enter__(self) -> Stack:
        self.upstream.start()
        self.link.start()
        port = free_port()
        opts = EnvoyOptions(listen_address="127.0.0.1", listen_port=port, admin_port=0,
                            link=(self.link.grpc_address,), upstream=self.upstream.url,
                            authz_timeout_ms=2000,  # a loaded CI machine must not fail requests
                            otlp_endpoint=self.receiver.address if self.envoy_traces else None,
                            **{k: v for k, v in self.link.authz_options().items() if k != "authz_timeout_ms"},
                            # Envoy exports every 5 s by default and does not flush on exit.
                            trace_flush_interval_ms=100)
        bootstrap = build_bootstrap(opts)
        self.envoy = EnvoyProcess(render_yaml(bootstrap), port).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.envoy is not None:
            self.envoy.stop()  # flushes Envoy's spans on the way out
        self.link.stop()  # flushes Link's
        self.upstream.stop()

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        assert self.envoy is not None
        return httpx.get(self.envoy.url + path, headers=headers or {}, timeout=10)


def _envoy_servers(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.kind == "server" and s.service_name != "stoa-link"]


def _servers(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.kind == "server"]


def test_link_is_the_server_span_when_envoy_does_not_trace() -> None:
    with OtlpReceiver() as receiver:
        with Stack(receiver, envoy_traces=False) as stack:
            ok = stack.get("/invoices/42", {"user-agent": "trace-test"})
            followed = stack.get("/invoices/43", {"traceparent": CLIENT_TRACEPARENT})
            denied = stack.get("/private/x")
            assert (ok.status_code, followed.status_code, denied.status_code) == (200, 200, 401)
            seen = stack.upstream.requests
        assert receiver.wait_for(lambda spans: len(spans) >= 3)
        spans = receiver.spans
        assert len(spans) == 3
        assert len(_servers(spans)) == 3  # one server span per request
        by_path = {s.attributes["url.path"]: s for s in spans}

        first = by_path["/invoices/42"]
        assert first.name == "GET /invoices/{id}"
        assert first.parent_span_id == ""  # a new trace
        assert first.service_name == "stoa-link"
        a = first.attributes
        assert (a["http.request.method"], a["http.route"], a["stoa.tenant"], a["stoa.decision"]) == (
            "GET", "/invoices/{id}", "acme", "allow")
        assert a["stoa.consumer"] == "anonymous"
        assert a["user_agent.original"] == "trace-test"

        # The upstream joined each trace, as a child of Link's span.
        for request, span in zip(seen, (first, by_path["/invoices/43"]), strict=True):
            tp = parse_traceparent(request.headers["traceparent"])
            assert tp is not None
            assert (tp.trace_id, tp.span_id) == (span.trace_id, span.span_id)
        second = by_path["/invoices/43"]
        assert second.trace_id == CLIENT_TRACE and second.parent_span_id == "00f067aa0ba902b7"

        refused = by_path["/private/x"]
        assert refused.attributes["stoa.decision"] == "deny"
        assert refused.attributes["http.response.status_code"] == 401


def test_envoy_server_span_carries_link_attributes() -> None:
    with OtlpReceiver() as receiver:
        with Stack(receiver, envoy_traces=True) as stack:
            assert stack.get("/invoices/7", {"traceparent": CLIENT_TRACEPARENT}).status_code == 200
            assert stack.get("/private/x", {"traceparent": CLIENT_TRACEPARENT}).status_code == 401
            seen = stack.upstream.requests
            assert receiver.wait_for(lambda spans: len(_envoy_servers(spans)) >= 2)
        envoy_servers = _envoy_servers(receiver.spans)
        assert len(envoy_servers) == 2
        by_path = {s.attributes["url.path"]: s for s in envoy_servers}
        allowed = by_path["/invoices/7"]
        assert allowed.name == "GET /invoices/{id}"
        assert allowed.trace_id == CLIENT_TRACE
        a = allowed.attributes
        assert a["http.request.method"] == "GET"
        assert a["http.response.status_code"] == "200"  # Envoy's custom tags are strings
        assert a["http.route"] == "/invoices/{id}"
        assert (a["stoa.tenant"], a["stoa.consumer"], a["stoa.decision"], a["stoa.outcome"]) == (
            "acme", "anonymous", "allow", "success")
        assert re.fullmatch(r"[0-9a-f]{32}", a["stoa.decision_id"])
        refused = by_path["/private/x"].attributes
        assert (refused["stoa.decision"], refused["http.response.status_code"]) == ("deny", "401")
        # The upstream request is a child of Envoy's server span, in the client's trace.
        [upstream] = seen
        tp = parse_traceparent(upstream.headers["traceparent"])
        assert tp is not None and (tp.trace_id, tp.span_id) == (CLIENT_TRACE, allowed.span_id)


def test_link_decision_joins_envoys_trace() -> None:
    with OtlpReceiver() as receiver:
        with Stack(receiver, envoy_traces=True) as stack:
            assert stack.get("/invoices/9").status_code == 200  # no client trace: Envoy starts it
            assert receiver.wait_for(lambda spans: len(_envoy_servers(spans)) >= 1)
        spans = receiver.spans
        [server] = _servers(spans)  # exactly one server span: Envoy's
        [decision] = [s for s in spans if s.service_name == "stoa-link"]
        assert decision.kind == "internal" and decision.name == "stoa.decision"
        assert decision.trace_id == server.trace_id
        ext_authz = {s.span_id: s for s in spans}[decision.parent_span_id]
        assert ext_authz.kind == "client" and ext_authz.parent_span_id == server.span_id
