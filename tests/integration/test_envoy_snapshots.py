"""Error snapshots through the real Envoy, masked, stored, served; captured both ways Link can.

``tap`` (the default): Envoy's tap filter, attached by Link through Envoy's admin, streams only
error exchanges of opted-in routes; ``ext_proc``: one stream per request on those routes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from link.snapshots.tap import TapSubscriber
from tests.harness.procs import free_port
from tests.harness.sidecar import HARNESS_TIMEOUTS, Sidecar

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-tests"
ROUTES = [
    {"name": "orders", "prefix": "/orders", "anonymous": True, "tenant": "acme", "snapshots": True},
    {"name": "plain", "prefix": "/plain", "anonymous": True, "tenant": "acme"},
]
SECRETS = {
    "bearer": "s3cr3t-bearer-value-0001",
    "cookie": "session-cookie-value-0002",
    "api_key": "api-key-value-0003",
    "password": "pa55word-value-0004",
    "email": "jane.roe@example.org",
    "card": "4111 1111 1111 1111",
}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module", params=["tap", "ext_proc"])
def sidecar(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            transport: str) -> Iterator[Sidecar]:
    db = tmp_path_factory.mktemp("snapshots") / "snapshots.db"
    overrides: dict[str, Any] = {"snapshots.enabled": True, "snapshots.db_path": str(db),
                                 "snapshots.admin_token": TOKEN, "snapshots.capture_4xx": False,
                                 "snapshots.capture": request.param}
    # Generous gRPC timeouts: a loaded CI machine must not turn a slow answer into a 500.
    envoy: dict[str, Any] = {"authz_timeout_ms": 2000, "ext_proc_timeout_ms": 2000}
    if request.param == "tap":
        admin = free_port()
        overrides["snapshots.envoy_admin_url"] = f"http://127.0.0.1:{admin}"
        envoy |= {"snapshot_tap": True, "admin_port": admin}
    else:
        envoy["ext_proc_prefixes"] = ("/orders",)
    with Sidecar(overrides, routes=ROUTES, envoy_options=envoy, transport=transport) as sc:
        if request.param == "tap":
            _wait_for_tap(sc)
        yield sc


def _tap(sc: Sidecar) -> TapSubscriber | None:
    return next((c for c in sc.link.app.components if isinstance(c, TapSubscriber)), None)


def _wait_for_tap(sc: Sidecar, timeout: float = 15.0) -> None:
    tap = _tap(sc)
    assert tap is not None, "snapshots.capture=tap installed no tap subscriber"
    deadline = time.monotonic() + timeout
    while not tap.attached:
        assert time.monotonic() < deadline, tap.readiness()
        time.sleep(0.05)


def _admin(sc: Sidecar, method: str, path: str, token: str | None = TOKEN, **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, sc.link.admin_url + path, headers=headers, timeout=5, **kw)


def _wait_for_snapshots(sc: Sidecar, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        listing = _admin(sc, "GET", "/admin/snapshots", params={"limit": "100"}).json()["snapshots"]
        if len(listing) >= count or time.monotonic() > deadline:
            return list(listing)
        time.sleep(0.05)


def _db_bytes(sc: Sidecar) -> bytes:
    db = Path(sc.settings.snapshots.db_path)
    return b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))


def test_a_5xx_on_an_opted_in_route_is_captured_masked(sidecar: Sidecar) -> None:
    body = {"customer": {"email": SECRETS["email"], "password": SECRETS["password"]}, "card": SECRETS["card"]}
    r = sidecar.post(
        "/orders/status/502?api_key=" + SECRETS["api_key"],
        json=body,
        headers={"authorization": f"Bearer {SECRETS['bearer']}", "cookie": f"sid={SECRETS['cookie']}",
                 "traceparent": TRACEPARENT},
    )
    assert r.status_code == 502
    request_id = r.headers["x-request-id"]
    listing = _wait_for_snapshots(sidecar, 1)
    assert len(listing) == 1
    summary = listing[0]
    assert summary["response_status"] == 502 and summary["tenant_id"] == "acme"
    doc = _admin(sidecar, "GET", f"/admin/snapshots/{summary['id']}").json()

    assert doc["request_id"] == request_id
    assert doc["request_method"] == "POST"
    assert doc["request_path"] == "/orders/status/502?api_key=[masked]"
    assert doc["response_status"] == 502 and doc["error_type"] == "bad_gateway"
    assert doc["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert doc["route"] == "orders" and doc["tenant_id"] == "acme"
    assert doc["request"]["headers"]["authorization"] == "[REDACTED]"
    assert doc["request"]["headers"]["cookie"] == "[REDACTED]"
    sent = json.loads(doc["request"]["body"])
    assert sent == {"customer": {"email": "[email]", "password": "[masked]"}, "card": "[card]"}
    # The echo upstream sent the request back, headers included: masked by key and by detector.
    echoed = json.loads(doc["response"]["body"])
    assert echoed["status"] == 502
    assert echoed["headers"]["authorization"] == "[masked]"
    assert "upstream" in doc["timing"]
    assert doc["pii_found"] is True
    assert set(doc["pii_kinds"]) == {"email", "card", "secret"}
    assert doc["replay_command"].startswith("curl ")
    assert "/orders/status/502?api_key=[masked]" in doc["replay_command"]

    stored = _db_bytes(sidecar)
    for secret in SECRETS.values():
        assert secret.encode() not in stored, secret
        assert secret not in json.dumps(doc)


def test_routes_and_statuses_that_did_not_opt_in_are_not_captured(sidecar: Sidecar) -> None:
    before = len(_wait_for_snapshots(sidecar, 0))
    assert sidecar.get("/plain/status/503").status_code == 503  # route not opted in
    assert sidecar.get("/orders/status/404").status_code == 404  # 4xx not configured
    assert sidecar.get("/orders/ok").status_code == 200
    assert sidecar.get("/orders/status/504").status_code == 504  # this one is: proves the sink is live
    after = _wait_for_snapshots(sidecar, before + 1)
    assert len(after) == before + 1
    assert after[0]["response_status"] == 504 and after[0]["request_path"] == "/orders/status/504"


def test_admin_api_needs_the_token_and_deletes(sidecar: Sidecar) -> None:
    assert sidecar.get("/orders/status/500").status_code == 500
    listing = _wait_for_snapshots(sidecar, 1)
    sid = listing[0]["id"]
    assert _admin(sidecar, "GET", "/admin/snapshots", token=None).status_code == 401
    assert _admin(sidecar, "GET", f"/admin/snapshots/{sid}", token="wrong").status_code == 401
    assert _admin(sidecar, "DELETE", f"/admin/snapshots/{sid}").status_code == 204
    assert _admin(sidecar, "GET", f"/admin/snapshots/{sid}").status_code == 404
    metrics = httpx.get(sidecar.link.admin_url + "/metrics", timeout=5).text
    assert "stoa_link_snapshots_stored_total" in metrics


def test_successes_and_unopted_routes_never_reach_link(sidecar: Sidecar) -> None:
    """With the tap, a 2xx (or an error on a route that did not opt in) sends Link nothing at all."""
    tap = _tap(sidecar)
    if tap is None:
        pytest.skip("ext_proc capture streams every request of the route by design")
    before = tap.traces
    streams_before = _ext_proc_streams(sidecar)
    for _ in range(20):
        assert sidecar.get("/orders/ok").status_code == 200
        assert sidecar.post("/orders/ok", json={"n": 1}).status_code == 200
    assert sidecar.get("/plain/status/500").status_code == 500
    assert sidecar.get("/orders/status/503").status_code == 503  # the one exchange Envoy streams
    deadline = time.monotonic() + 10
    while tap.traces < before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # anything else Envoy might (wrongly) stream would arrive by now
    assert tap.traces == before + 1
    # The counter is process-wide: other tests' Link servers in this process may have opened streams.
    assert _ext_proc_streams(sidecar) == streams_before


def _ext_proc_streams(sidecar: Sidecar) -> float:
    metrics = httpx.get(sidecar.link.admin_url + "/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("stoa_link_ext_proc_streams_total{"))


def test_the_decision_is_joined_from_the_access_log(sidecar: Sidecar) -> None:
    r = sidecar.get("/orders/status/500?case=joined")
    assert r.status_code == 500
    deadline = time.monotonic() + 10
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        listing = _admin(sidecar, "GET", "/admin/snapshots", params={"limit": "100"}).json()["snapshots"]
        found = [s for s in listing if s["request_path"] == "/orders/status/500?case=joined"]
        if found:
            doc = _admin(sidecar, "GET", f"/admin/snapshots/{found[0]['id']}").json()
            break
        time.sleep(0.05)
    assert doc, "no snapshot of the failed request"
    assert doc["request_id"] == r.headers["x-request-id"]
    assert len(doc["decision_id"]) == 32  # Link's decision, not just Envoy's view of the exchange
    assert doc["tenant_id"] == "acme" and doc["route"] == "orders"
    assert doc["timing"]["upstream"] >= 0


@pytest.mark.parametrize("opt_in", ["route", "tenant"])
def test_a_refusal_link_decides_is_one_snapshot_with_its_request(
        tmp_path: Path, transport: str, opt_in: str) -> None:
    """Link snapshots its own refusals; the upstream's errors come through the tap. One snapshot each.

    A refusal is a local reply of ext_authz. A tap matching on the status alone (tenants opted in,
    as in the demo) streams that reply too, without its request; it must not become a second
    snapshot with no path, method or route.
    """
    admin = free_port()
    overrides: dict[str, Any] = {
        "snapshots.enabled": True, "snapshots.db_path": str(tmp_path / "snapshots.db"),
        "snapshots.admin_token": TOKEN, "snapshots.capture_4xx": True, "snapshots.capture": "tap",
        "snapshots.envoy_admin_url": f"http://127.0.0.1:{admin}"}
    if opt_in == "tenant":
        overrides["snapshots.tenants"] = ["*"]
    routes = [{"name": "secure", "prefix": "/secure", "tenant": "acme", "snapshots": opt_in == "route"},
              {"name": "orders", "prefix": "/orders", "anonymous": True, "tenant": "acme",
               "snapshots": opt_in == "route"}]
    envoy = {**HARNESS_TIMEOUTS, "snapshot_tap": True, "admin_port": admin}
    with Sidecar(overrides, routes=routes, envoy_options=envoy, transport=transport) as sc:
        _wait_for_tap(sc)
        tap = _tap(sc)
        assert tap is not None
        assert sc.get("/secure/thing?x=1").status_code == 401  # Link's refusal
        assert sc.get("/orders/status/404").status_code == 404  # the upstream's, through the tap
        deadline = time.monotonic() + 10
        while tap.traces < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.0)  # longer than the join waits for an access-log entry
        listing = _wait_for_snapshots(sc, 2)
        assert tap.traces == (1 if opt_in == "route" else 2)  # the status-only tap streams the 401 too
        assert sorted((s["request_path"], s["response_status"], s["route"]) for s in listing) == [
            ("/orders/status/404", 404, "orders"), ("/secure/thing?x=1", 401, "secure")]
