"""The core Prometheus metrics, fed by install(app)'s outcome sink and decision observer."""

from __future__ import annotations

import uuid

from link.app import LinkApp
from link.events import RequestOutcome
from link.metrics import REGISTRY
from link.model import Outcome, RequestContext
from link.telemetry import DecisionMetrics, RequestMetrics
from tests.unit.telemetry.support import request, settings


def _value(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_request_metrics_by_route_tenant_outcome() -> None:
    sink = RequestMetrics()
    route = f"r-{uuid.uuid4().hex[:8]}"  # a fresh label set: other tests share the registry
    labels = {"route": route, "tenant": "acme", "outcome": "error"}
    for latency in (3.0, 40.0, 900.0):
        sink.offer(RequestOutcome(request_id="x", timestamp=0.0, method="GET", path="/", http_status=502,
                                  outcome=Outcome.ERROR, route=route, tenant="acme", latency_ms=latency))
    sink.offer(RequestOutcome(request_id="y", timestamp=0.0, method="GET", path="/", http_status=200,
                              outcome=Outcome.SUCCESS, route="", tenant="", latency_ms=1.0))
    assert _value("stoa_link_requests_total", labels) == 3
    hist = {"route": route, "outcome": "error"}
    assert _value("stoa_link_request_seconds_count", hist) == 3
    assert abs(_value("stoa_link_request_seconds_sum", hist) - 0.943) < 1e-9
    assert _value("stoa_link_request_seconds_bucket", {**hist, "le": "0.05"}) == 2
    assert _value("stoa_link_requests_total", {"route": "unmatched", "tenant": "none", "outcome": "success"}) >= 1


async def test_decision_metrics_by_entry_outcome_reason() -> None:
    app = LinkApp(settings(), plugins=("link.telemetry",))  # tracing off: metrics only
    assert any(isinstance(o, DecisionMetrics) for o in app.pipeline._observers)
    entry = f"e{uuid.uuid4().hex[:6]}"
    denied = {"entry": entry, "outcome": "unauthenticated", "reason": "missing_credentials"}
    allowed = {"entry": entry, "outcome": "success", "reason": "none"}
    for path in ("/private/a", "/private/b", "/public/1"):
        req = request(path)
        ctx = RequestContext(request=req)
        ctx.record.entry = entry
        await app.pipeline.run(req, ctx)
    assert _value("stoa_link_decisions_total", denied) == 2
    assert _value("stoa_link_decisions_total", allowed) == 1
    assert _value("stoa_link_decision_seconds_count", {"entry": entry}) == 3
    assert _value("stoa_link_phase_seconds_count", {"phase": "identity"}) >= 3


async def test_default_entry_is_ext_authz() -> None:
    app = LinkApp(settings(), plugins=("link.telemetry",))
    before = _value("stoa_link_decision_seconds_count", {"entry": "ext_authz"})
    await app.pipeline.run(request("/public/1"))
    assert _value("stoa_link_decision_seconds_count", {"entry": "ext_authz"}) == before + 1
