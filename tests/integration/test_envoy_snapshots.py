"""Error snapshots through the real Envoy: captured by ext_proc on opted-in routes, masked, stored, served."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.sidecar import Sidecar

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


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    db = tmp_path_factory.mktemp("snapshots") / "snapshots.db"
    overrides = {"snapshots.enabled": True, "snapshots.db_path": str(db), "snapshots.admin_token": TOKEN,
                 "snapshots.capture_4xx": False}
    # Generous gRPC timeouts: a loaded CI machine must not turn a slow answer into a 500.
    envoy = {"ext_proc_prefixes": ("/orders",), "ext_proc_timeout_ms": 2000, "authz_timeout_ms": 2000}
    with Sidecar(overrides, routes=ROUTES, envoy_options=envoy) as sc:
        yield sc


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
