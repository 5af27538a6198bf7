"""Start Envoy, Link, the MCP server and a demo upstream; stop them all on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from link.demo.upstream import DemoUpstream
from link.envoyconf import build_bootstrap, render_yaml
from link.envoyconf.from_settings import envoy_options
from link.settings import load_settings

DEMO_API_KEY = "demo-key-acme-123"


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _pick(port: int) -> int:
    """The well-known port if free, else any free one (several demos may share a machine)."""
    if port and _port_free(port):
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status < 500:
                    return True
        except Exception:
            time.sleep(0.1)
    return False


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the demo itself dies (even by SIGKILL), so nothing is left behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _envoy_binary() -> str:
    return shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")


def demo_settings(workdir: Path, assets: Path, grpc_port: int, admin_port: int, mcp_port: int) -> dict[str, Any]:
    """The demo's Link configuration (also what the README shows)."""
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    metering_on = bool(kafka) and os.environ.get("METERING_ENABLED", "true").lower() in ("1", "true", "yes")
    return {
        "mode": "sidecar",
        "primary_gateway": "kong",
        "server": {"grpc_address": f"127.0.0.1:{grpc_port}", "admin_address": f"127.0.0.1:{admin_port}"},
        "routes": [
            {"name": "public", "prefix": "/public", "anonymous": True, "tenant": "demo"},
            {"name": "invoices", "prefix": "/api/invoices", "contract": "billing-api",
             "rate_limit": "30/min", "snapshots": True},
            {"name": "api", "prefix": "/api"},
        ],
        "identity": {"api_keys_file": str(assets / "api-keys.yaml")},
        "policy": {"enabled": True, "paths": [str(assets / "policy.rego")],
                   "decision_log": str(workdir / "decisions.log")},
        "ratelimit": {"tenant_default": "600/min"},
        "contracts": {"paths": [str(assets / "contracts")], "mode": "enforce"},
        "metering": {"enabled": metering_on, "bootstrap_servers": kafka or None,
                     "spool_dir": str(workdir / "spool")},
        "snapshots": {"enabled": True, "db_path": str(workdir / "snapshots.db"), "capture_4xx": True,
                      "tenants": ["*"], "admin_token": "demo-admin-token"},
        "registry": {"source": "files", "path": str(assets / "registry")},
        "mcp": {"port": mcp_port, "public_tenants": ["demo"]},
    }


def run_demo(args: argparse.Namespace) -> int:
    assets = Path(str(resources.files("link.demo") / "assets"))
    workdir = Path(tempfile.mkdtemp(prefix="stoa-link-demo-"))
    listen = _pick(args.listen)
    grpc_port, admin_port, mcp_port, envoy_admin = _pick(9191), _pick(8081), _pick(3001), _pick(9901)
    upstream = DemoUpstream().start()
    config_path = workdir / "link.yaml"
    config_path.write_text(yaml.safe_dump(demo_settings(workdir, assets, grpc_port, admin_port, mcp_port)))
    env = {**os.environ, "DEMO_UPSTREAM": upstream.url}
    # The demo's own settings file is the source of truth; keep the caller's STOA_* out of it.
    for var in [v for v in env if v.startswith("STOA_") or v in ("GATEWAY_MODE", "GATEWAY_PORT")]:
        env.pop(var)
    log = open(workdir / "link.log", "ab")  # noqa: SIM115
    children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent)
        children.append((name, proc))
        return proc

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    status = 0
    try:
        link = spawn("link", [sys.executable, "-m", "link.cli", "serve", "--config", str(config_path)])
        if not _wait_http(f"http://127.0.0.1:{admin_port}/health/live", 30, link):
            raise RuntimeError("Link did not start")
        if not args.no_mcp:
            mcp = spawn("mcp", [sys.executable, "-m", "link.cli", "mcp", "--config", str(config_path)])
            if not _wait_http(f"http://127.0.0.1:{mcp_port}/mcp/v1/tools", 30, mcp):
                print("warning: the MCP server did not come up; see the log", file=sys.stderr)
        settings = load_settings(str(config_path), env={})
        opts = envoy_options(settings, listen_address="127.0.0.1", listen_port=listen, admin_port=envoy_admin,
                             upstream=upstream.url)
        envoy_yaml = workdir / "envoy.yaml"
        envoy_yaml.write_text(render_yaml(build_bootstrap(opts)))
        envoy = spawn("envoy", [_envoy_binary(), "-c", str(envoy_yaml), "--use-dynamic-base-id",
                                "--log-level", "warning", "--concurrency", "2"])
        if not _wait_http(f"http://127.0.0.1:{envoy_admin}/ready", 30, envoy):
            raise RuntimeError("Envoy did not start")
        _wait_http(f"http://127.0.0.1:{admin_port}/health/ready", 10, link)
        _banner(listen, admin_port, mcp_port, envoy_admin, upstream.url, workdir, args.no_mcp)
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop.is_set():
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping the demo (log: {workdir / 'link.log'})",
                          file=sys.stderr)
                    stop.set()
                    status = 1
            if deadline is not None and time.monotonic() >= deadline:
                break
            stop.wait(0.5)
    except RuntimeError as exc:
        print(f"stoa-link demo: {exc}; log: {workdir / 'link.log'}", file=sys.stderr)
        status = 1
    finally:
        for _name, proc in reversed(children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc in reversed(children):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        upstream.stop()
        log.close()
        print("demo stopped")
    return status


def _banner(listen: int, admin: int, mcp: int, envoy_admin: int, upstream: str, workdir: Path,
            no_mcp: bool) -> None:
    base = f"http://127.0.0.1:{listen}"
    lines = [
        "",
        "STOA Link demo is running (Ctrl-C to stop)",
        f"  Envoy (front proxy)     {base}",
        f"  Link admin              http://127.0.0.1:{admin}/health/ready   /metrics",
        *([] if no_mcp else [f"  MCP server              http://127.0.0.1:{mcp}/mcp   (REST: /mcp/v1/tools)"]),
        f"  demo upstream ('Kong')  {upstream}",
        f"  Envoy admin             http://127.0.0.1:{envoy_admin}",
        f"  logs and data           {workdir}",
        "",
        "Try:",
        f"  curl -i {base}/public/hello                                   # allowed: public route",
        f"  curl -i {base}/api/invoices/inv-1001                          # refused: 401, no credentials",
        f"  curl -i -H 'x-api-key: {DEMO_API_KEY}' {base}/api/invoices/inv-1001   # allowed: API key",
        f"  curl -i -H 'x-api-key: {DEMO_API_KEY}' -X POST -H 'content-type: application/json' \\",
        f"       -d '{{\"customer\": 42}}' {base}/api/invoices                   # refused: 422 by the contract",
        f"  curl -i -H 'x-api-key: {DEMO_API_KEY}' {base}/api/invoices/inv-500   # 500 upstream: a masked snapshot",
        f"  curl -s http://127.0.0.1:{admin}/admin/snapshots -H 'authorization: Bearer demo-admin-token'",
        *([] if no_mcp else [f"  curl -s http://127.0.0.1:{mcp}/mcp/v1/tools                  # MCP tools, REST"]),
        "",
    ]
    print("\n".join(lines), flush=True)
