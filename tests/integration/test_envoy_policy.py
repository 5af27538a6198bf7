"""Policies end to end through the real Envoy binary: RBAC allow/deny, hot reload under traffic."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import pytest

from tests.harness.procs import wait_until
from tests.harness.sidecar import Sidecar

pytestmark = pytest.mark.integration

ROUTES = [{"name": "api", "prefix": "/", "anonymous": True, "tenant": "acme"}]

RBAC = """
package envoy.authz

import rego.v1

import input.attributes.request.http

default allow := false

allow if {
	http.method == "GET"
	input.parsed_path[0] == "public"
}

allow if {
	http.headers["x-user-role"] == "admin"
	input.parsed_path[0] == "admin"
}
"""

# The second good version: /public is closed, /open is opened.
RBAC_V2 = RBAC.replace('"public"', '"open"')
BROKEN = "package envoy.authz\n\nallow if {\n  input.parsed_path[0] ==\n"


def _replace(path: Path, text: str) -> None:
    """Write a new version atomically (like a ConfigMap update) with a distinct mtime."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_rbac_by_path_method_and_header(tmp_path: Path, transport: str) -> None:
    policy = tmp_path / "policy.rego"
    policy.write_text(RBAC)
    with Sidecar({"policy.enabled": True, "policy.paths": [str(policy)]}, routes=ROUTES, transport=transport) as sc:
        assert sc.get("/public/info").status_code == 200
        assert sc.post("/public/info", json={}).status_code == 403
        assert sc.get("/admin/users").status_code == 403
        assert sc.get("/admin/users", headers={"x-user-role": "admin"}).status_code == 200
        assert sc.get("/admin/users", headers={"x-user-role": "guest"}).status_code == 403
        denied = sc.get("/private")
        # A boolean refusal is Envoy's bare 403, as with OPA-Envoy: no body of Link's (docs/opa-envoy.md).
        assert denied.status_code == 403 and denied.content == b""
        # Only the allowed requests reached the upstream.
        assert [r.path for r in sc.upstream.requests] == ["/public/info", "/admin/users"]


def test_hot_reload_good_broken_good_under_traffic(tmp_path: Path) -> None:
    policy = tmp_path / "policy.rego"
    policy.write_text(RBAC)
    settings = {"policy.enabled": True, "policy.paths": [str(policy)], "policy.reload_interval_s": 0.05}
    with Sidecar(settings, routes=ROUTES) as sc:
        statuses: list[tuple[str, int]] = []
        stop = threading.Event()

        def traffic() -> None:
            with httpx.Client(base_url=sc.url, timeout=10) as client:
                for _ in range(20_000):  # bounded; stopped by the test long before
                    if stop.is_set():
                        return
                    for path in ("/public/a", "/open/a"):
                        statuses.append((path, client.get(path).status_code))

        worker = threading.Thread(target=traffic, daemon=True)
        worker.start()
        try:
            assert wait_until(lambda: len(statuses) >= 20, timeout=20)
            _replace(policy, BROKEN)
            # The broken version is seen (reload fails) and the old one stays in force.
            assert wait_until(lambda: "last reload failed" in sc.link.app.readiness()[1]["policy"]["detail"],
                              timeout=20)
            seen = len(statuses)
            assert wait_until(lambda: len(statuses) >= seen + 20, timeout=20)
            _replace(policy, RBAC_V2)
            assert wait_until(lambda: statuses[-1] == ("/open/a", 200), timeout=20)
            seen = len(statuses)
            assert wait_until(lambda: len(statuses) >= seen + 20, timeout=20)
        finally:
            stop.set()
            worker.join(20)

    # Never a request without a policy: only the two good versions' answers.
    assert {s for _, s in statuses} <= {200, 403}
    # Each answer belongs to exactly one version (v1: /public open, /open closed; v2: the reverse).
    # The switch may fall between the two requests of a pair, so find the first v2 answer of either path.
    first_v2 = next(i for i, (p, s) in enumerate(statuses) if s == (200 if p == "/open/a" else 403))
    before, after = statuses[:first_v2], statuses[first_v2:]
    assert all(s == (200 if p == "/public/a" else 403) for p, s in before)
    assert all(s == (200 if p == "/open/a" else 403) for p, s in after)
    assert len(before) >= 40 and len(after) >= 20
