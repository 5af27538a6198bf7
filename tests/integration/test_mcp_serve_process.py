"""`stoa-link serve` as shipped: one process serves the decision service, the admin port and MCP.

Started through the real command (a subprocess), with a real Kafka-protocol broker (tansu)
and a control-plane stand-in over HTTP. What one process per pod must make true (ADR 0010):
one registration and one heartbeat stream, one metering spool, events stamped with the
control plane's gateway id, MCP metrics on both ``/metrics`` endpoints, SIGTERM drains all.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import yaml
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from link.demo.upstream import DemoUpstream
from tests.harness.controlplane import ControlPlaneServer
from tests.harness.kafka import TansuBroker, TopicReader
from tests.harness.procs import ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.integration

ASSETS = Path(__file__).resolve().parents[2] / "link" / "demo" / "assets"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("STOA_") and k not in ("KAFKA_BOOTSTRAP_SERVERS", "GATEWAY_PORT", "GATEWAY_MODE")}
    return {**env, **extra}


class Serve:
    """One `stoa-link serve` process and the addresses it serves."""

    def __init__(self, tmp: Path, broker: TansuBroker, cp: ControlPlaneServer, upstream: str,
                 *, workers: int = 1, grpc_port: int | None = None) -> None:
        self.grpc_port = grpc_port or free_port()
        self.admin_port = free_port() if workers == 1 else self.grpc_port + 100
        self.mcp_port = free_port()
        config = {
            "mode": "sidecar",
            "server": {"grpc_address": f"127.0.0.1:{self.grpc_port}",
                       "admin_address": f"127.0.0.1:{self.admin_port}", "workers": workers,
                       "http_address": f"127.0.0.1:{free_port()}",
                       "shutdown_grace_s": 2},
            "policy": {"enabled": False},
            "identity": {"api_keys_file": str(ASSETS / "api-keys.yaml")},
            "snapshots": {"enabled": True, "db_path": str(tmp / "snapshots.db")},
            "metering": {"enabled": True, "bootstrap_servers": broker.bootstrap, "spool_dir": str(tmp / "spool"),
                         "linger_ms": 5},
            "registry": {"source": "files", "path": str(ASSETS / "registry")},
            "mcp": {"port": self.mcp_port, "public_tenants": ["demo"]},
            "controlplane": {"url": cp.url, "instance_name": "pod-under-test"},
        }
        path = tmp / "link.yaml"
        path.write_text(yaml.safe_dump(config))
        self.proc = ManagedProcess([sys.executable, "-m", "link.cli", "serve", "--config", str(path)],
                                   log_path=tmp / "serve.log", env=_clean_env(DEMO_UPSTREAM=upstream))

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def mcp(self) -> str:
        return f"http://127.0.0.1:{self.mcp_port}"

    def wait_ready(self) -> None:
        def up() -> bool:
            assert self.proc.alive(), self.proc.log_text()
            try:
                return (httpx.get(f"{self.admin}/health/ready", timeout=1).status_code == 200
                        and httpx.get(f"{self.mcp}/healthz", timeout=1).status_code == 200)
            except httpx.HTTPError:
                return False

        assert wait_until(up, timeout=40, interval=0.1), self.proc.log_text()


@pytest.fixture
def parts() -> Iterator[tuple[TansuBroker, ControlPlaneServer, str]]:
    upstream = DemoUpstream().start()
    try:
        with TansuBroker() as broker, ControlPlaneServer(heartbeat_interval_s=1) as cp:
            yield broker, cp, upstream.url
    finally:
        upstream.stop()


def _samples(text: str, family: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith(family + "{")}


async def test_serve_is_one_process_one_registration_and_one_spool(
    tmp_path: Path, parts: tuple[TansuBroker, ControlPlaneServer, str]
) -> None:
    broker, cp, upstream = parts
    serve = Serve(tmp_path, broker, cp, upstream)
    try:
        serve.wait_ready()
        [registration] = cp.wait_for("register", 1, timeout=20)
        assert registration.body["instance_name"] == "pod-under-test" and "mcp" in registration.body["features"]
        gateway_id = registration.gateway_id
        assert gateway_id
        cp.wait_for("heartbeat", 2, timeout=20)
        web = httpx.AsyncClient(timeout=5)
        readiness = (await web.get(f"{serve.admin}/health/ready")).json()
        assert f"registered as {gateway_id}" in readiness["checks"]["controlplane"]["detail"]

        # The demo's say-hello over MCP (Streamable HTTP, the official SDK), with the caller's trace.
        http = httpx2.AsyncClient(headers={"traceparent": TRACEPARENT})
        async with Client(streamable_http_client(f"{serve.mcp}/mcp", http_client=http), mode="legacy") as client:
            listed = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("say-hello", {"name": "Ada"})
        # An unknown tool over REST (the SDK client refuses names it was not listed).
        unknown = await web.post(f"{serve.mcp}/mcp/v1/tools/no-such-tool", json={},
                                 headers={"x-api-key": "demo-key-acme-123"})
        assert unknown.status_code == 404
        assert "say-hello" in listed
        assert not result.is_error, result
        assert json.loads(result.content[0].text)["message"] == "Hello, Ada!"  # type: ignore[union-attr]

        # Both metering events reach the broker, named by the control plane's id, with the caller's trace.
        async with TopicReader(broker.bootstrap, "stoa.metering") as reader:
            assert await reader.read_until(lambda m: len(m) >= 2, within_s=20), [m.value for m in reader.messages]
        events = [json.loads(m.value) for m in reader.messages]
        assert {e["gateway_id"] for e in events} == {gateway_id}
        assert {e["instance"] for e in events} == {"pod-under-test"}
        by_tool = {e["tool_name"]: e for e in events}
        assert by_tool["say-hello"]["status"] == "success"
        assert by_tool["say-hello"]["trace_id"] == TRACE_ID
        assert by_tool["no-such-tool"]["status"] == "not_found"

        # One registry, two doors: the admin port and the MCP port show the same MCP families.
        for base in (serve.admin, serve.mcp):
            text = (await web.get(f"{base}/metrics")).text
            calls = _samples(text, "stoa_link_mcp_tool_calls_total")
            hello = [k for k in calls if 'tool="say-hello"' in k and 'tenant="demo"' in k
                     and 'outcome="success"' in k]
            assert hello and calls[hello[0]] == 1.0, text
            assert any('outcome="not_found"' in k and 'tool=""' in k for k in calls)
            assert any(k.startswith('stoa_link_mcp_tool_call_seconds_count{') and 'tool="say-hello"' in k
                       for k in _samples(text, "stoa_link_mcp_tool_call_seconds_count"))

        # The one heartbeat counts MCP calls with the decisions (one process, one set of counters).
        assert wait_until(lambda: any(c.body["metrics"]["requests_total"] >= 1 for c in cp.of_kind("heartbeat")),
                          timeout=15), [c.body for c in cp.of_kind("heartbeat")][-3:]
        assert {c.gateway_id for c in cp.of_kind("heartbeat")} == {gateway_id}

        # No second spool writer: one lock holder, this process.
        assert [p.name for p in (tmp_path / "spool").iterdir() if p.is_dir()] == []
        assert "SpoolError" not in serve.proc.log_text()
        await web.aclose()
    finally:
        code = serve.proc.stop(signal.SIGTERM, timeout=30)
    assert code == 0, serve.proc.log_text()
    assert len(cp.of_kind("register")) == 1
    assert "Traceback" not in serve.proc.log_text()


def test_workers_make_one_registration_and_share_its_gateway_id(
    tmp_path: Path, parts: tuple[TansuBroker, ControlPlaneServer, str]
) -> None:
    broker, cp, upstream = parts
    base = _free_pair()
    serve = Serve(tmp_path, broker, cp, upstream, workers=2, grpc_port=base)
    try:
        serve.wait_ready()
        [registration] = cp.wait_for("register", 1, timeout=20)
        cp.wait_for("heartbeat", 3, timeout=20)
        worker_admin = f"http://127.0.0.1:{serve.admin_port + 1}"

        def worker_follows() -> Any:
            try:
                checks = httpx.get(f"{worker_admin}/health/ready", timeout=1).json()["checks"]
            except (httpx.HTTPError, ValueError):
                return False
            return f"worker of gateway {registration.gateway_id}" in checks["controlplane"]["detail"]

        assert wait_until(worker_follows, timeout=20, interval=0.1), serve.proc.log_text()
        # Only the first process serves MCP (one port per pod).
        assert httpx.get(f"{serve.mcp}/healthz", timeout=5).status_code == 200
        heartbeats = cp.of_kind("heartbeat")
        assert {c.gateway_id for c in heartbeats} == {registration.gateway_id}
    finally:
        code = serve.proc.stop(signal.SIGTERM, timeout=40)
    assert code == 0, serve.proc.log_text()
    assert len(cp.of_kind("register")) == 1, cp.calls


def _free_pair() -> int:
    """A port p such that p, p+1 (gRPC) and p+100, p+101 (admin) are free now."""
    import socket

    for _ in range(50):
        p = free_port()
        if p + 101 > 65535:
            continue
        socks = []
        try:
            for port in (p, p + 1, p + 100, p + 101):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


class _SlowUpstream:
    """An HTTP API that answers only when released: a tool call that is in flight for as long as we like."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.arrived = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                outer.arrived.set()
                outer.release.wait(30)
                body = b'{"done": true}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> _SlowUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


def test_sigterm_lets_an_mcp_call_in_flight_finish(tmp_path: Path) -> None:
    import threading

    with _SlowUpstream() as slow:
        registry = tmp_path / "registry"
        registry.mkdir()
        (registry / "slow.yaml").write_text(yaml.safe_dump({
            "apiVersion": "gostoa.dev/v1alpha1", "kind": "Tool", "metadata": {"name": "slow", "namespace": "demo"},
            "spec": {"displayName": "Slow", "description": "Answers when released", "method": "GET",
                     "endpoint": f"{slow.url}/slow", "timeout": "30s"}}))
        mcp_port, admin_port = free_port(), free_port()
        config = {"server": {"grpc_address": f"127.0.0.1:{free_port()}", "admin_address": f"127.0.0.1:{admin_port}",
                             "shutdown_grace_s": 10},
                  "policy": {"enabled": False}, "metering": {"enabled": False}, "snapshots": {"enabled": False},
                  "registry": {"source": "files", "path": str(registry)},
                  "mcp": {"port": mcp_port, "public_tenants": ["demo"]}}
        (tmp_path / "link.yaml").write_text(yaml.safe_dump(config))
        proc = ManagedProcess([sys.executable, "-m", "link.cli", "serve", "--config", str(tmp_path / "link.yaml")],
                              log_path=tmp_path / "serve.log", env=_clean_env())
        try:
            def up() -> bool:
                assert proc.alive(), proc.log_text()
                try:
                    return httpx.get(f"http://127.0.0.1:{mcp_port}/healthz", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            assert wait_until(up, timeout=40, interval=0.1), proc.log_text()
            answer: dict[str, Any] = {}

            def call() -> None:
                r = httpx.post(f"http://127.0.0.1:{mcp_port}/mcp/v1/tools/slow", json={}, timeout=30)
                answer.update(status=r.status_code, body=r.json())

            caller = threading.Thread(target=call)
            caller.start()
            assert slow.arrived.wait(15), proc.log_text()  # the call is in flight, upstream included
            proc.proc.send_signal(signal.SIGTERM)
            # Draining: the admin port says not ready while the call is still open.
            assert wait_until(lambda: _not_ready(admin_port), timeout=10), proc.log_text()
            slow.release.set()
            caller.join(30)
            assert answer.get("status") == 200, (answer, proc.log_text())
            assert answer["body"]["structuredContent"] == {"done": True}
            assert proc.proc.wait(30) == 0, proc.log_text()
        finally:
            proc.stop()
    assert "Traceback" not in proc.log_text()


def _not_ready(admin_port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{admin_port}/health/ready", timeout=1).status_code == 503
    except httpx.HTTPError:
        return False
