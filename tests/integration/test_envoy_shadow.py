"""Shadow mode through real Envoy, in front of a stand-in legacy API.

Runs the seed's command line as written (``stoa-link serve --mode=shadow
--target=… --output=…``, Link supervising its own Envoy), sends varied traffic
full of personal data, and checks: responses identical with and without Link,
the learned contract (templated paths, parameter types, body schema), no raw
personal value in any file written, review/promote, and purge at start-up.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from link.contracts.model import parse_contract
from tests.harness.envoy import EnvoyProcess
from tests.harness.procs import ManagedProcess, free_port, wait_for_port, wait_until

pytestmark = pytest.mark.integration

STOA = [sys.executable, "-m", "link.cli"]
# Personal data the traffic carries; none of it may appear in anything shadow mode writes.
EMAILS = [f"person{i}.doe@example.org" for i in range(8)]
CARD = "4111 1111 1111 1111"
IBAN = "DE89370400440532013000"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqYW5lIn0.c2lnbmF0dXJlLXNlY3JldA"
API_KEY = "legacy-key-7f3a9c"
PHONE = "+33 6 12 34 56 78"


class _Legacy(BaseHTTPRequestHandler):
    """A legacy ERP: answers from the path; sends its own Date so responses are byte-stable."""

    disable_nagle_algorithm = True  # headers and body are two writes: no wait for a delayed ACK between

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        return

    def _answer(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        path = self.path.split("?")[0]
        parts = path.strip("/").split("/")
        status = 200
        payload: Any
        if parts[:2] == ["erp", "customers"] and len(parts) == 3 and parts[2].isdigit():
            i = int(parts[2])
            payload = {"id": i, "name": "Jane Doe", "email": EMAILS[i % len(EMAILS)], "iban": IBAN,
                       "phone": PHONE, "tags": ["gold"], "since": "2020-01-31"}
        elif parts[:2] == ["erp", "customers"] and len(parts) == 5 and parts[3] == "orders":
            payload = {"order": parts[4], "total": 12.5, "lines": [{"sku": "A-1", "qty": 2}]}
        elif path == "/erp/orders" and self.command == "POST":
            doc = json.loads(body or b"{}")
            status = 201 if "customer" in doc else 400
            payload = {"created": True} if status == 201 else {"error": "customer required"}
        elif path == "/erp/invoices":
            payload = {"invoices": [{"number": "F-1", "amount": 10}], "page": 1}
        else:
            status, payload = 404, {"error": "not found"}
        out = json.dumps(payload).encode()
        self.send_response_only(status)
        self.send_header("Date", "Mon, 01 Jun 2026 10:00:00 GMT")
        self.send_header("Server", "legacy-erp/4.2")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


@pytest.fixture()
def legacy() -> Any:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Legacy)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _raw(port: int, request: bytes) -> bytes:
    """Send one raw HTTP/1.1 request (Connection: close) and return the raw response bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def _traffic() -> list[bytes]:
    """Varied requests: ids, UUIDs, query parameters (one optional), JSON bodies, credentials, PII."""
    reqs: list[bytes] = []

    def req(method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        lines = [f"{method} {target} HTTP/1.1", "Host: legacy-erp", "Connection: close"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body:
            lines.append(f"Content-Length: {len(body)}")
        reqs.append(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    for i in range(12):
        req("GET", f"/erp/customers/{1000 + i * 37}", {"Authorization": f"Bearer {TOKEN}"})
        req("GET", f"/erp/customers/{2000 + i}/orders/{uuid.uuid5(uuid.NAMESPACE_URL, str(i))}", {"X-Api-Key": API_KEY})
        query = f"status=open&page={i}" if i % 2 else "status=paid"
        req("GET", f"/erp/invoices?{query}&email={EMAILS[i % 8].replace('@', '%40')}")
        order: dict[str, Any] = {"customer": EMAILS[i % 8], "card": CARD, "qty": i + 1,
                                 "lines": [{"sku": "A-1", "qty": 1}]}
        if i % 3 == 0:
            order["note"] = f"call {PHONE}"
        req("POST", "/erp/orders", {"Content-Type": "application/json"}, json.dumps(order).encode())
    return reqs


def _learned(out: Path) -> dict[str, Any]:
    path = out / "learned.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _ops(out: Path) -> dict[str, dict[str, Any]]:
    return {o["key"]: o for o in _learned(out).get("operations", [])}


def _all_bytes(root: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def _shadow_cmd(target: str, out: Path, listen: int, grpc: int, *extra: str) -> list[str]:
    # The seed's command line, as written, plus loopback ports for the test.
    return [*STOA, "serve", "--mode=shadow", f"--target={target}", f"--output={out}", f"--listen={listen}",
            "--set", f"server.grpc_address=127.0.0.1:{grpc}", "--set", "shadow.infer_interval_s=0.3",
            "--set", "envoy.admin_port=0", "--set", "envoy.listen_address=127.0.0.1", *extra]


def test_envoy_shadow_seed_command_learns_contract_and_keeps_no_pii(legacy: str, tmp_path: Path) -> None:
    out = tmp_path / "uac"
    samples = out / ".samples"
    samples.mkdir(parents=True)
    # A sample file from 2020: past any retention, it must be purged at start.
    (samples / "samples-20200101.jsonl").write_text('{"api": "x", "ts": 1577836800}\n')
    listen, grpc = free_port(), free_port()
    proc = ManagedProcess(_shadow_cmd(legacy, out, listen, grpc), log_path=tmp_path / "link.log")
    try:
        wait_for_port(listen, timeout=60, proc=proc.proc)
        assert not (samples / "samples-20200101.jsonl").exists()
        reqs = _traffic()
        legacy_port = int(legacy.rsplit(":", 1)[1])
        for raw in reqs:
            through = _raw(listen, raw)
            direct = _raw(legacy_port, raw)
            # Zero modification: the client gets the legacy API's bytes.
            assert through.split(b"\r\n\r\n", 1)[1] == direct.split(b"\r\n\r\n", 1)[1]
            assert through.split(b"\r\n", 1)[0] == direct.split(b"\r\n", 1)[0]
        assert wait_until(lambda: len(_ops(out)) >= 4 and sum(o["samples"] for o in _ops(out).values()) >= 48,
                          timeout=30), (_ops(out).keys(), proc.log_text()[-2000:])
        log = proc.log_text()
        assert "shadow mode" in log and "captured" in log
    finally:
        assert proc.stop() == 0

    ops = _ops(out)
    assert set(ops) == {
        "GET /erp/customers/{customerId}",
        "GET /erp/customers/{customerId}/orders/{orderId}",
        "GET /erp/invoices",
        "POST /erp/orders",
    }, set(ops)
    get_customer = ops["GET /erp/customers/{customerId}"]
    assert get_customer["path_params"][0]["schema"] == {"type": "integer"}
    assert get_customer["auth"] == {"bearer": 12}
    assert get_customer["response_schemas"]["200"]["properties"]["email"]["format"] == "email"
    orders = ops["GET /erp/customers/{customerId}/orders/{orderId}"]
    assert [p["schema"] for p in orders["path_params"]] == [{"type": "integer"}, {"type": "string", "format": "uuid"}]
    assert orders["auth"] == {"api_key:x-api-key": 12}
    invoices = ops["GET /erp/invoices"]
    assert invoices["query"]["status"]["required"] is True
    assert invoices["query"]["page"] == {"schema": {"type": "integer"}, "required": False, "samples": 6}
    post = ops["POST /erp/orders"]
    body = post["request_schema"]
    assert body["type"] == "object"
    assert set(body["required"]) == {"customer", "card", "qty", "lines"}
    assert "note" in body["properties"] and body["properties"]["note"]["x-stoa-samples"] == 4
    assert body["properties"]["qty"]["type"] == "integer"
    assert post["statuses"] == {"201": 12}

    # Drafts: a UAC contract that parses, one Tool per operation, an OpenAPI 3.1 document.
    drafts = out / "drafts"
    contract_files = list(drafts.glob("*.contract.draft.yaml"))
    assert len(contract_files) == 1
    doc = yaml.safe_load(contract_files[0].read_text())
    contract, problems = parse_contract(doc)
    assert problems == [] and contract is not None and contract.status == "draft"
    assert {e.path for e in contract.endpoints} == {
        "/erp/customers/{customerId}", "/erp/customers/{customerId}/orders/{orderId}", "/erp/invoices", "/erp/orders"}
    assert len(list((drafts / "tools").glob("*.draft.yaml"))) == 4
    openapi = yaml.safe_load(next(drafts.glob("*.openapi.draft.yaml")).read_text())
    assert openapi["openapi"] == "3.1.0" and openapi["info"]["x-stoa-draft"] is True
    assert openapi["paths"]["/erp/invoices"]["get"]["x-stoa-samples"] == 12

    # No raw personal value anywhere shadow mode wrote, samples included (decoded spellings too).
    written = _all_bytes(out)
    for secret in [*EMAILS, CARD, CARD.replace(" ", ""), IBAN, TOKEN, API_KEY, PHONE, "Jane Doe",
                   *(e.replace("@", "%40") for e in EMAILS)]:
        assert secret.encode() not in written, secret


def test_envoy_shadow_link_down_changes_nothing(legacy: str, tmp_path: Path) -> None:
    """Envoy beside Link (as in Kubernetes): responses are byte for byte the same with Link up, and down."""
    out = tmp_path / "uac"
    listen, grpc = free_port(), free_port()
    yaml_text = subprocess.run(
        [*STOA, "envoy-config", "--mode", "shadow", "--target", legacy, "--listen", str(listen),
         "--listen-address", "127.0.0.1", "--admin-port", "0", "--health-port", "0", "--link", f"127.0.0.1:{grpc}"],
        check=True, capture_output=True, text=True).stdout
    link = ManagedProcess(_shadow_cmd(legacy, out, free_port(), grpc, "--set", "envoy.supervise=false"),
                          log_path=tmp_path / "link.log")
    with EnvoyProcess(yaml_text, listen) as envoy:
        wait_for_port(grpc, timeout=30, proc=link.proc)
        reqs = _traffic()[:16]
        with_link = [_raw(envoy.port, r) for r in reqs]
        assert wait_until(lambda: sum(o["samples"] for o in _ops(out).values()) >= 16, timeout=30), \
            link.log_text()[-2000:]
        link.kill()
        time.sleep(0.5)
        without_link = [_raw(envoy.port, r) for r in reqs]
    assert with_link == without_link
    assert all(r.startswith(b"HTTP/1.1 20") for r in with_link[:2])


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STOA, *args], capture_output=True, text=True, timeout=60)


def test_shadow_review_and_promote_commands(tmp_path: Path) -> None:
    """review says what changed since the last review; promote writes files the loaders accept."""
    from link.shadow.infer import infer_operations
    from link.shadow.output import write_outputs
    from link.shadow.sample import Observation, SampleBuilder

    builder = SampleBuilder("legacy-erp", "tenant-acme", b"k" * 32)
    obs = [Observation("GET", f"/erp/customers/{i}", {}, 200, {"content-type": "application/json"},
                       response_body=b'{"id": 1}') for i in range(10)]
    out = tmp_path / "uac"
    write_outputs(out, infer_operations([builder.build(o) for o in obs]), {"legacy-erp": "http://legacy:8080"})
    first = _run("shadow", "review", str(out))
    assert first.returncode == 0 and "GET /erp/customers/{customerId}" in first.stdout and "(new)" in first.stdout
    second = _run("shadow", "review", str(out))
    assert "(new)" not in second.stdout
    obs.append(Observation("GET", "/erp/customers/3?verbose=true", {}, 200))
    write_outputs(out, infer_operations([builder.build(o) for o in obs]), {"legacy-erp": "http://legacy:8080"})
    third = _run("shadow", "review", str(out))
    assert "(changed)" in third.stdout and "query.verbose" in third.stdout

    bad = _run("shadow", "promote", str(out), "no_such_op", "--to", str(tmp_path / "served"))
    assert bad.returncode == 1 and "no learned operation" in bad.stderr
    good = _run("shadow", "promote", str(out), "get_erp_customers_by_customer_id", "--to", str(tmp_path / "served"))
    assert good.returncode == 0, good.stderr
    contract = yaml.safe_load((tmp_path / "served/contracts/legacy-erp.yaml").read_text())
    parsed, problems = parse_contract(contract)
    assert problems == [] and parsed is not None and parsed.status == "published"
    tool = yaml.safe_load(next((tmp_path / "served/tools").glob("*.yaml")).read_text())
    assert tool["kind"] == "Tool" and "gostoa.dev/draft" not in tool["metadata"]["annotations"]
    assert tool["spec"]["endpoint"] == "http://legacy:8080/erp/customers/{customerId}"
    check = _run("validate", str(tmp_path / "served"))
    assert check.returncode == 0, check.stdout + check.stderr


def test_shadow_start_up_refuses_long_retention_and_missing_target(tmp_path: Path) -> None:
    long = _run("serve", "--mode=shadow", "--target=http://127.0.0.1:9", f"--output={tmp_path}",
                "--set", "shadow.retention_days=45")
    assert long.returncode == 2
    assert "shadow.retention_days" in long.stderr and "at most 30 days" in long.stderr
    missing = _run("serve", "--mode=shadow", f"--output={tmp_path}")
    assert missing.returncode == 2 and "shadow.target" in missing.stderr


def test_envoy_shadow_without_opt_in_captures_nothing(legacy: str, tmp_path: Path) -> None:
    """Several APIs in a configuration: only those that opted in are captured; start-up says so."""
    out = tmp_path / "uac"
    listen, grpc = free_port(), free_port()
    config = tmp_path / "link.yaml"
    config.write_text(yaml.safe_dump({"mode": "shadow", "shadow": {
        "output": str(out), "infer_interval_s": 0.3,
        "apis": [{"name": "erp", "target": legacy, "prefix": "/erp", "tenant": "acme"},
                 {"name": "other", "target": legacy, "prefix": "/other", "tenant": "acme", "opt_in": True}]},
        "server": {"grpc_address": f"127.0.0.1:{grpc}"},
        "envoy": {"listen_port": listen, "listen_address": "127.0.0.1", "admin_port": 0}}))
    proc = ManagedProcess([*STOA, "serve", "--config", str(config)], log_path=tmp_path / "link.log")
    try:
        wait_for_port(listen, timeout=60, proc=proc.proc)
        for i in range(5):
            assert _raw(listen, f"GET /erp/customers/{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                        .encode()).startswith(b"HTTP/1.1 200")
        _raw(listen, b"GET /other/thing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert wait_until(lambda: bool(_ops(out)), timeout=20)
        time.sleep(1)
        log = proc.log_text()
    finally:
        proc.stop()
    assert "NOT captured: no opt-in" in log and "erp" in log
    assert {o["api"] for o in _learned(out)["operations"]} == {"other"}
