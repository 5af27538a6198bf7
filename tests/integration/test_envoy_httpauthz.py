"""Envoy's ext_authz to Link over HTTP (``http_service``), through the real Envoy binary.

The trap this transport must not fall into: to Envoy any 5xx from an HTTP authorization
service is a failure of the service (``status_on_error``, let through with
``failure_mode_allow``). Link's own 5xx refusals must keep their status, headers and JSON body
and must never pass, in either failure mode, on either transport. Also: Unix sockets, headers
only Envoy may set, several worker processes sharing one socket, and a graceful stop.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from link.model import Decision, RequestContext
from tests.harness.controlplane import ControlPlaneServer
from tests.harness.envoy import envoy_for
from tests.harness.procs import ManagedProcess, free_port, wait_for_port, wait_until
from tests.harness.sidecar import Sidecar
from tests.harness.upstream import EchoUpstream

pytestmark = pytest.mark.integration

ROUTES = [
    {"name": "public", "prefix": "/public", "anonymous": True, "tenant": "demo", "rate_limit": "1000/s"},
]


class _Outcomes:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def offer(self, outcome: Any) -> None:
        self.items.append(outcome)


class _Seen:
    """A decision observer: the Request each decision was taken on, as Link saw it."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def observe(self, ctx: RequestContext, decision: Decision) -> None:
        self.requests.append(ctx.request)


class _Broken:
    """A phase with a bug: the pipeline turns it into a 500 ``internal_error`` decision."""

    name = "broken"

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        raise RuntimeError("a bug")


def _break_pipeline(sc: Sidecar) -> None:
    pipeline = sc.link.app.pipeline
    pipeline._phases = (_Broken(), *pipeline._phases)  # test-only: simulate a bug inside the pipeline


REFUSALS: dict[str, tuple[dict[str, Any], int, str, dict[str, str]]] = {
    # name: (settings, status, body reason, headers the client must get)
    "ratelimit_unavailable": ({"ratelimit.backend": "redis", "ratelimit.redis_failure_mode": "deny"},
                              503, "rate limiting is unavailable", {"retry-after": "1"}),
    "policy_unavailable": ({"policy.enabled": True}, 503, "", {}),
    "internal_error": ({}, 500, "internal error", {}),
}


@pytest.mark.parametrize("failure_mode", ["closed", "open"])
@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_links_own_5xx_refusals_keep_status_and_body_and_never_pass(
        transport: str, failure_mode: str, refusal: str, tmp_path: Path) -> None:
    overrides, status, reason, headers = REFUSALS[refusal]
    overrides = dict(overrides)
    if refusal == "ratelimit_unavailable":
        overrides["ratelimit.redis_url"] = f"redis://127.0.0.1:{free_port()}"  # nothing listens there
    if refusal == "policy_unavailable":
        overrides["policy.paths"] = [str(tmp_path / "missing.rego")]
    with Sidecar(overrides, routes=ROUTES, transport=transport, envoy_options={"failure_mode": failure_mode}) as sc:
        if refusal == "internal_error":
            _break_pipeline(sc)
        outcomes = _Outcomes()
        sc.link.app.add_outcome_sink(outcomes)
        r = sc.get("/public/x")
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert body["request_id"] == r.headers["x-request-id"]
        assert body["error"] == {500: "internal_error", 503: "unavailable"}[status]
        if reason:
            assert body["reason"] == reason
        for name, value in headers.items():
            assert r.headers[name] == value
        assert sc.upstream.requests == []  # never let through, fail-open or not
        stats = sc.envoy.stats("http.ingress.ext_authz") if sc.envoy else {}
        assert stats.get("http.ingress.ext_authz.stoa_link.failure_mode_allowed", 0) == 0
        assert stats.get("http.ingress.ext_authz.stoa_link.error", 0) == 0  # a decision, not a failure
        # The access log (metering, metrics) learns the decision and the status the client got.
        rid = r.headers["x-request-id"]
        assert wait_until(lambda: [o for o in outcomes.items if o.request_id == rid], timeout=10)
        (seen,) = [o for o in outcomes.items if o.request_id == rid]
        assert seen.http_status == status and seen.outcome.value == "error"
        assert seen.decision_id and seen.route == "public"


POLITE = """package envoy.authz

import rego.v1

default result := {"allowed": false, "http_status": 200, "body": "denied, politely"}
"""


@pytest.mark.parametrize("failure_mode", ["closed", "open"])
def test_a_policys_refusal_with_status_200_is_never_an_allow(transport: str, failure_mode: str,
                                                             tmp_path: Path) -> None:
    """The reverse trap: a 200 from the HTTP service means "allowed" to Envoy, so a policy's refusal
    with status 200 travels as a reserved status; the client gets the policy's 200 and body, the
    upstream gets nothing."""
    rego = tmp_path / "polite.rego"
    rego.write_text(POLITE)
    overrides = {"policy.enabled": True, "policy.paths": [str(rego)], "policy.query": "data.envoy.authz.result"}
    with Sidecar(overrides, routes=ROUTES, transport=transport, envoy_options={"failure_mode": failure_mode}) as sc:
        r = sc.get("/public/polite")
        assert (r.status_code, r.content) == (200, b"denied, politely")
        assert sc.upstream.requests == []


def test_reserved_statuses_never_reach_the_client_from_an_upstream(transport: str) -> None:
    """The local-reply mappers touch only ext_authz denials: an upstream's own 49x passes as is."""
    with Sidecar(routes=ROUTES, transport=transport) as sc:
        for status in (490, 493, 499, 503):
            r = sc.get(f"/public/status/{status}")
            assert r.status_code == status


@pytest.fixture(scope="module")
def uds_sidecar() -> Iterator[Sidecar]:
    with Sidecar({"policy.enabled": False}, routes=[*ROUTES, {"name": "private", "prefix": "/private"}],
                 transport="http", uds=True) as sc:
        yield sc


def test_decisions_over_a_unix_socket(uds_sidecar: Sidecar) -> None:
    sock = uds_sidecar.settings.server.http_uds
    assert sock and Path(sock).is_socket()
    assert uds_sidecar.envoy is not None and f"path: {sock}" in uds_sidecar.envoy.config_path.read_text()
    assert uds_sidecar.get("/public/a").status_code == 200
    assert uds_sidecar.upstream.requests[-1].headers["x-stoa-tenant"] == "demo"
    refused = uds_sidecar.get("/private/a")
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"


@pytest.mark.parametrize("policy", [False, True], ids=["pipeline-headers", "all-headers"])
def test_headers_only_envoy_may_set_never_come_from_the_client(policy: bool, tmp_path: Path) -> None:
    """Source address, TLS peer, scheme reach Link from Envoy alone, whatever the client sends."""
    overrides: dict[str, Any] = {}
    if policy:  # a policy makes every request header travel: the spoofing surface is widest
        rego = tmp_path / "allow.rego"
        rego.write_text("package envoy.authz\n\nimport rego.v1\n\ndefault allow := false\n\nallow if true\n")
        overrides = {"policy.enabled": True, "policy.paths": [str(rego)]}
    with Sidecar(overrides, routes=ROUTES, transport="http") as sc:
        seen = _Seen()
        sc.link.app.pipeline.add_observer(seen)
        spoof = {"stoa-envoy-source": "6.6.6.6:666", "stoa-envoy-peer-uri-san": "spiffe://evil/ns/acme/sa/x",
                 "stoa-envoy-peer-subject": "CN=evil", "stoa-envoy-scheme": "https", "stoa-envoy-traced": "1",
                 "x-user-role": "admin"}
        r = sc.get("/public/spoof", headers=spoof)
        assert r.status_code == 200
        (req,) = seen.requests
        assert req.source_address == "127.0.0.1" and req.source_port > 0
        assert req.peer is None and req.scheme == "http" and req.context == {}
        assert not [h for h in req.headers if h.startswith("stoa-envoy-")]
        assert ("x-user-role" in req.headers) is policy  # policies see every header; otherwise only the list
        assert req.path == "/public/spoof"


def _free_run(n: int) -> int:
    """A port p with p+1 … p+n-1 free too (workers' ports are the first one's + i); bounded tries."""
    for _ in range(50):
        port = free_port()
        held = []
        try:
            for i in range(1, n):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port + i))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return port
    raise RuntimeError(f"no {n} consecutive free ports")


def _direct_check(address: str, path: str) -> int:
    """One check on a fresh connection to Link's decision socket (``unix:/path`` or ``host:port``)."""
    if address.startswith("unix:"):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(10)
        conn.connect(address[len("unix:"):])
    else:
        host, _, port = address.rpartition(":")
        conn = socket.create_connection((host, int(port)), timeout=10)
    with conn:
        conn.sendall(f"GET /check{path} HTTP/1.1\r\nhost: link\r\nconnection: close\r\n\r\n".encode())
        head = conn.recv(64)
    return int(head.split(b" ", 2)[1])


def _decisions(admin_url: str) -> float:
    text = httpx.get(f"{admin_url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("stoa_link_decisions_total{"))


@pytest.mark.parametrize("listen", ["uds", "tcp"])
def test_worker_processes_share_one_socket_and_drain_on_sigterm(listen: str) -> None:
    with tempfile.TemporaryDirectory(prefix="stoa-workers-") as tmp:
        sock = Path(tmp) / "authz.sock"
        grpc = _free_run(4)  # two gRPC ports, then two admin ports
        admin = grpc + 2
        server: dict[str, Any] = {"workers": 2, "grpc_address": f"127.0.0.1:{grpc}",
                                  "admin_address": f"127.0.0.1:{admin}", "shutdown_grace_s": 2}
        if listen == "uds":
            server["http_uds"] = str(sock)
            link_http = f"unix:{sock}"
        else:
            link_http = f"127.0.0.1:{free_port()}"
            server["http_address"] = link_http
        config = {"server": server,
                  "metering": {"enabled": False, "spool_dir": str(Path(tmp) / "spool")},
                  "snapshots": {"enabled": False}, "registry": {"source": "none"}, "policy": {"enabled": False},
                  "mcp": {"enabled": False}, "routes": ROUTES}
        path = Path(tmp) / "link.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = ManagedProcess([sys.executable, "-m", "link.cli", "serve", "--config", str(path)],
                              log_path=Path(tmp) / "link.log")
        try:
            for port in (grpc, grpc + 1, admin, admin + 1):
                wait_for_port(port, timeout=30, proc=proc.proc)
            admins = [f"http://127.0.0.1:{admin}", f"http://127.0.0.1:{admin + 1}"]
            assert wait_until(lambda: all(httpx.get(f"{a}/health/ready", timeout=5).status_code == 200
                                          for a in admins), timeout=30)
            with EchoUpstream() as up, envoy_for([f"127.0.0.1:{grpc}", f"127.0.0.1:{grpc + 1}"], up.url,
                                                 link_http=(link_http,)) as envoy:
                statuses: list[int] = []

                def burst() -> None:
                    with httpx.Client(timeout=10) as client:
                        for _ in range(10):
                            statuses.append(client.get(f"{envoy.url}/public/w").status_code)

                # Concurrent clients make Envoy open several connections; the kernel hands them to both.
                for _ in range(10):  # bounded
                    threads = [threading.Thread(target=burst) for _ in range(8)]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join(30)
                    if all(_decisions(a) > 0 for a in admins):
                        break
                assert set(statuses) == {200}
                # Envoy keeps its connections to Link: which process accepted them is the kernel's
                # pick at the first burst (one process may take them all). Fresh connections, each
                # one check, show the socket is served by both (bounded).
                for _ in range(400):
                    if all(_decisions(a) > 0 for a in admins):
                        break
                    assert _direct_check(link_http, "/public/w") == 200
                assert all(_decisions(a) > 0 for a in admins), [_decisions(a) for a in admins]
            proc.proc.send_signal(signal.SIGTERM)  # forwarded to the worker; both drain and exit
            assert proc.proc.wait(30) == 0
            if listen == "uds":
                assert not sock.exists()  # the first process removes the socket it bound
        finally:
            proc.stop()


def _last_heartbeat(cp: ControlPlaneServer) -> dict[str, Any]:
    beats = cp.of_kind("heartbeat")
    return beats[-1].body if beats else {}


def _multi_worker_config(tmp: Path, cp_url: str, *, workers: int, grpc: int, admin: int, link_http: str) -> Path:
    config = {"server": {"workers": workers, "grpc_address": f"127.0.0.1:{grpc}", "http_address": link_http,
                         "admin_address": f"127.0.0.1:{admin}", "shutdown_grace_s": 2},
              "controlplane": {"url": cp_url, "heartbeat_interval_min_s": 0.1,
                               "gateway_id_file": str(tmp / "gateway-id")},
              "metering": {"enabled": False, "spool_dir": str(tmp / "spool")},
              "snapshots": {"enabled": False}, "registry": {"source": "none"}, "policy": {"enabled": False},
              "mcp": {"enabled": False}, "routes": ROUTES}
    path = tmp / "link.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_multi_worker_pod_heartbeats_once_for_all_its_workers() -> None:
    """`serve` with two workers, against a local control plane (the same HTTP contract, ADR-057):
    one registration; the heartbeat counts the checks both processes decided; a worker killed
    makes the pod degraded while its counts stay in."""
    with tempfile.TemporaryDirectory(prefix="stoa-workers-") as tmp, \
            ControlPlaneServer(heartbeat_interval_s=0.3) as cp:
        grpc = _free_run(4)
        admin = grpc + 2
        link_http = f"127.0.0.1:{free_port()}"
        path = _multi_worker_config(Path(tmp), cp.url, workers=2, grpc=grpc, admin=admin, link_http=link_http)
        proc = ManagedProcess([sys.executable, "-m", "link.cli", "serve", "--config", str(path)],
                              log_path=Path(tmp) / "link.log")
        try:
            admins = [f"http://127.0.0.1:{admin}", f"http://127.0.0.1:{admin + 1}"]
            for port in (admin, admin + 1):
                wait_for_port(port, timeout=30, proc=proc.proc)
            sent = 0
            for _ in range(400):  # fresh connections until both processes decided some (bounded)
                if sent and all(_decisions(a) > 0 for a in admins):
                    break
                assert _direct_check(link_http, "/public/w") == 200
                sent += 1
            per_process = [_decisions(a) for a in admins]
            assert all(per_process) and sum(per_process) == sent

            def last_heartbeat() -> dict[str, Any]:
                return _last_heartbeat(cp)

            assert wait_until(lambda: last_heartbeat().get("metrics", {}).get("requests_total") == sent, timeout=20), \
                last_heartbeat()
            assert last_heartbeat()["status"] == "healthy"
            assert len(cp.of_kind("register")) == 1

            worker_files = list(Path(tmp).glob("counters-*.json"))
            assert len(worker_files) == 1
            os.kill(int(worker_files[0].stem.removeprefix("counters-")), signal.SIGKILL)
            assert wait_until(lambda: last_heartbeat().get("status") == "degraded", timeout=30), last_heartbeat()
            assert last_heartbeat()["metrics"]["requests_total"] == sent  # what the dead worker decided stays
            assert len(cp.of_kind("register")) == 1
        finally:
            proc.stop()


def test_a_worker_that_dies_at_start_up_makes_the_pod_degraded() -> None:
    """Three workers, and the third cannot start (its admin port is taken): it never writes a
    counters file, so only the number started can show it. The pod keeps serving on the other two
    and, once a worker has had time to report, the heartbeat says degraded and why."""
    with tempfile.TemporaryDirectory(prefix="stoa-workers-") as tmp, \
            ControlPlaneServer(heartbeat_interval_s=0.3) as cp:
        grpc = _free_run(6)
        admin = grpc + 3
        link_http = f"127.0.0.1:{free_port()}"
        path = _multi_worker_config(Path(tmp), cp.url, workers=3, grpc=grpc, admin=admin, link_http=link_http)
        taken = socket.socket()
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", admin + 2))
        taken.listen(1)
        log = Path(tmp) / "link.log"
        proc = ManagedProcess([sys.executable, "-m", "link.cli", "serve", "--config", str(path)], log_path=log)
        try:
            for port in (admin, admin + 1):
                wait_for_port(port, timeout=30, proc=proc.proc)
            assert _direct_check(link_http, "/public/w") == 200

            def last_heartbeat() -> dict[str, Any]:
                return _last_heartbeat(cp)

            assert wait_until(lambda: last_heartbeat().get("status") == "healthy", timeout=10), last_heartbeat()
            assert wait_until(lambda: last_heartbeat().get("status") == "degraded", timeout=30), last_heartbeat()
            assert "1 worker of 2 never reported" in log.read_text()
            assert len(list(Path(tmp).glob("counters-*.json"))) == 1
            assert _direct_check(link_http, "/public/w") == 200  # the others still serve
        finally:
            proc.stop()
            taken.close()
