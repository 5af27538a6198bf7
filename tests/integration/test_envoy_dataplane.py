"""The data plane through the real Envoy binary: allow, refuse, Link down (fail closed / fail open)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.harness.envoy import envoy_for
from tests.harness.link_server import LinkThread, link_settings
from tests.harness.procs import free_port
from tests.harness.sidecar import Sidecar
from tests.harness.upstream import EchoUpstream

pytestmark = pytest.mark.integration

ROUTES = [
    {"name": "public", "prefix": "/public", "anonymous": True, "tenant": "demo"},
    {"name": "orders", "template": "/orders/{id}", "methods": ["GET"]},
]


@pytest.fixture(scope="module")
def sidecar(transport: str):
    with Sidecar(routes=ROUTES, transport=transport) as sc:
        yield sc


def test_allowed_request_reaches_upstream_with_injected_headers(sidecar: Sidecar) -> None:
    sidecar.upstream.clear()
    r = sidecar.get("/public/hello", headers={"x-stoa-tenant": "evil", "x-stoa-anything": "spoof"})
    assert r.status_code == 200
    seen = sidecar.upstream.requests[-1]
    assert seen.path == "/public/hello"
    assert seen.headers["x-stoa-tenant"] == "demo"  # overwritten, not the spoofed value
    assert "x-stoa-anything" not in seen.headers  # client-sent x-stoa-* stripped
    assert seen.headers.get("x-stoa-consumer") == "anonymous"
    assert seen.headers.get("x-request-id")
    assert r.headers["x-request-id"] == seen.headers["x-request-id"]


def test_client_request_id_is_replaced_and_kept_aside(sidecar: Sidecar) -> None:
    """The request id metering and snapshots key on is Envoy's; the client's value travels as untrusted data."""
    r = sidecar.get("/public/rid", headers={"x-request-id": "abc-123"})
    assert r.status_code == 200
    seen = sidecar.upstream.requests[-1].headers
    assert seen["x-request-id"] != "abc-123"
    assert seen["x-client-request-id"] == "abc-123"
    assert r.headers["x-request-id"] == seen["x-request-id"]


def test_refused_request_gets_status_and_json_body(sidecar: Sidecar) -> None:
    before = len(sidecar.upstream.requests)
    r = sidecar.get("/orders/42")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["www-authenticate"].startswith("Bearer")
    body = r.json()
    assert set(body) == {"error", "reason", "request_id"}
    assert body["error"] == "unauthorized"
    assert body["request_id"] == r.headers["x-request-id"]
    assert len(sidecar.upstream.requests) == before  # never reached the upstream


def test_unrouted_request_is_refused_by_default(sidecar: Sidecar) -> None:
    r = sidecar.get("/nowhere")
    assert r.status_code == 401


def test_upstream_errors_pass_through(sidecar: Sidecar) -> None:
    r = sidecar.get("/public/status/502")
    assert r.status_code == 502
    assert json.loads(r.content)["status"] == 502


@pytest.mark.parametrize(("failure_mode", "expected"), [("closed", 503), ("open", 200)])
def test_link_unreachable(transport: str, failure_mode: str, expected: int) -> None:
    """Nothing listens where Link should be: fail closed is a 503 (never a 403), fail open passes."""
    dead_link = f"127.0.0.1:{free_port()}"
    with EchoUpstream() as up, envoy_for([dead_link], up.url, failure_mode=failure_mode, authz_transport=transport,
                                         link_http=(dead_link,)) as envoy:
        r = httpx.get(f"{envoy.url}/public/x", timeout=10)
        assert r.status_code == expected
        assert len(up.requests) == (1 if expected == 200 else 0)


def test_link_stopped_after_start_fails_closed(transport: str) -> None:
    settings = link_settings({"server.authz_transport": transport}, routes=ROUTES)
    with EchoUpstream() as up:
        link = LinkThread(settings).start()
        try:
            with envoy_for([link.grpc_address], up.url, **link.authz_options()) as envoy:
                assert httpx.get(f"{envoy.url}/public/a", timeout=10).status_code == 200
                link.stop()
                r = httpx.get(f"{envoy.url}/public/b", timeout=10)
                assert r.status_code == 503
        finally:
            if link.runtime is not None:
                link.stop()


class _Collector:
    def __init__(self) -> None:
        self.items: list = []

    def offer(self, outcome) -> None:  # type: ignore[no-untyped-def]
        self.items.append(outcome)


def test_access_log_feed_joins_decisions(sidecar: Sidecar) -> None:
    """Every request, allowed or refused, comes back on the access-log stream with Link's decision."""
    from tests.harness.procs import wait_until

    collector = _Collector()
    sidecar.link.app.add_outcome_sink(collector)
    ids = []
    for i in range(5):
        ids.append(sidecar.get(f"/public/p{i}").headers["x-request-id"])
    for i in range(3):
        ids.append(sidecar.get(f"/orders/{i}").headers["x-request-id"])
    assert wait_until(lambda: {o.request_id for o in collector.items} >= set(ids), timeout=10)
    by_id = {o.request_id: o for o in collector.items}
    allowed = [by_id[i] for i in ids[:5]]
    refused = [by_id[i] for i in ids[5:]]
    for o in allowed:
        assert (o.http_status, o.outcome.value, o.tenant, o.route, o.method) == (200, "success", "demo", "public", "GET")
        assert o.decision_id and o.latency_ms > 0 and o.response_size_bytes > 0
        assert o.t_backend_ms > 0
    for o in refused:
        assert (o.http_status, o.outcome.value, o.route) == (401, "unauthenticated", "orders")
        assert o.reason  # the identity phase says why
        assert o.route_template == "/orders/{id}"


def test_envoy_health_listener_answers_ready() -> None:
    """The probe listener Kubernetes uses (the admin interface stays on loopback)."""
    health = free_port()
    with EchoUpstream() as up, envoy_for([f"127.0.0.1:{free_port()}"], up.url, health_port=health):
        assert httpx.get(f"http://127.0.0.1:{health}/ready", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{health}/other", timeout=5).status_code == 404
        assert len(up.requests) == 0
