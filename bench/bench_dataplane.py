# ruff: noqa: E402
"""Data-plane benchmark: Envoy alone vs Envoy + Link, against the same upstream, in one run.

    python bench/bench_dataplane.py [--duration 5] [--connections 16] [--workers 1]

The upstream is a second Envoy answering with a direct response, so it is never
the bottleneck. Load comes from `wrk` (Debian package; installed if missing, as
root). Every figure is printed next to the Envoy-alone baseline of the same run.

Scenarios:
  envoy-alone        plain proxy, no Link filters (the baseline)
  grpc-noop          ext_authz to a no-op Python grpc.aio server (bench/noop_authz.py): the floor of one
                     Python gRPC hop on this machine, for comparison
  authz-minimal      ext_authz to Link; an anonymous route (pipeline with identity + response only)
  authz-full         ext_authz to Link; API key, Rego policy, local rate limit (the production shape)
  authz-full+meter   authz-full with metering to a real Kafka-protocol broker (tansu), built from
                     Envoy's access-log feed: should cost the request path nothing
  authz+ext_proc     authz-full plus ext_proc on every request (headers and bodies)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml
from envoy_data_plane.envoy.config.bootstrap.v3 import Admin, Bootstrap, BootstrapStaticResources
from envoy_data_plane.envoy.config.core.v3 import Address, DataSource, SocketAddress
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    Route,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpFilter,
)
from envoy_data_plane.google.protobuf import Any as AnyProto

from link.envoyconf import EnvoyOptions, build_bootstrap, render_yaml
from tests.harness.envoy import EnvoyProcess
from tests.harness.procs import ManagedProcess, free_port, wait_for_port

API_KEY = "bench-key-0001"


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    p50_1conn_ms: float
    errors: int


def upstream_bootstrap(port: int) -> str:
    hcm = HttpConnectionManager(
        stat_prefix="up",
        route_config=RouteConfiguration(virtual_hosts=[VirtualHost(
            name="all", domains=["*"],
            routes=[Route(match=RouteMatch(prefix="/"), direct_response=DirectResponseAction(
                status=200, body=DataSource(inline_string='{"ok":true}')))])]),
        http_filters=[HttpFilter(name="envoy.filters.http.router", typed_config=AnyProto.pack(Router()))],
    )
    b = Bootstrap(
        admin=Admin(address=Address(socket_address=SocketAddress(address="127.0.0.1", port_value=0))),
        static_resources=BootstrapStaticResources(listeners=[Listener(
            name="up", address=Address(socket_address=SocketAddress(address="127.0.0.1", port_value=port)),
            filter_chains=[FilterChain(filters=[Filter(name="envoy.filters.network.http_connection_manager",
                                                       typed_config=AnyProto.pack(hcm))])])]),
    )
    return yaml.safe_dump(b.to_dict())


def link_config(tmp: Path, scenario: str, grpc_port: int, admin_port: int, kafka: str | None = None) -> Path:
    keys = tmp / "keys.yaml"
    keys.write_text(yaml.safe_dump({hashlib.sha256(API_KEY.encode()).hexdigest():
                                    {"consumer": "bench-app", "tenant": "bench", "scopes": ["bench:read"]}}))
    policy = tmp / "policy.rego"
    policy.write_text(
        "package envoy.authz\n\nimport rego.v1\n\ndefault allow := false\n\n"
        "allow if {\n\tinput.attributes.request.http.method == \"GET\"\n"
        "\t\"bench:read\" in input.stoa.principal.scopes\n}\n"
    )
    full = scenario != "authz-minimal"
    cfg = {
        "log_level": "warning",
        "server": {"grpc_address": f"127.0.0.1:{grpc_port}", "admin_address": f"127.0.0.1:{admin_port}"},
        "routes": [{"name": "bench", "prefix": "/", "anonymous": not full, "tenant": "bench"}],
        "identity": {"api_keys_file": str(keys)},
        "policy": {"enabled": full, "paths": [str(policy)]},
        "ratelimit": {"enabled": full, "tenant_default": "100000000/sec"},
        "contracts": {"enabled": False},
        "metering": {"enabled": kafka is not None, "bootstrap_servers": kafka,
                     "spool_dir": str(tmp / f"spool-{scenario}-{grpc_port}")},
        "snapshots": {"enabled": False},
        "registry": {"source": "none"},
    }
    path = tmp / f"link-{scenario}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


_LAT = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def _to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, connections: int, duration: float, threads: int) -> tuple[float, float, float, int]:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, int(duration))}s", "--latency", "-H", f"x-api-key: {API_KEY}", url],
        capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {m.group(1): _to_ms(m.group(2), m.group(3)) for m in _LAT.finditer(out)}
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(m.group(1)) if m else 0
    return rps, lat.get("50", 0.0), lat.get("99", 0.0), errors


def run_scenario(name: str, up_port: int, tmp: Path, args: argparse.Namespace, kafka: str | None) -> Result:
    procs: list[ManagedProcess] = []
    link_addresses: list[str] = []
    try:
        if name != "envoy-alone":
            for w in range(args.workers):
                grpc_port, admin_port = free_port(), free_port()
                if name == "grpc-noop":
                    argv = [sys.executable, str(Path(__file__).with_name("noop_authz.py")), f"127.0.0.1:{grpc_port}"]
                else:
                    cfg = link_config(tmp, name, grpc_port, admin_port, kafka if name.endswith("+meter") else None)
                    argv = [sys.executable, "-m", "link.cli", "serve", "--config", str(cfg)]
                p = ManagedProcess(argv, log_path=tmp / f"link-{name}-{w}.log")
                procs.append(p)
                wait_for_port(grpc_port, timeout=30, proc=p.proc)
                link_addresses.append(f"127.0.0.1:{grpc_port}")
        port = free_port()
        opts = EnvoyOptions(listen_address="127.0.0.1", listen_port=port, admin_port=0,
                            link=tuple(link_addresses) or ("127.0.0.1:1",),
                            upstream=f"http://127.0.0.1:{up_port}", link_filters=name != "envoy-alone",
                            ext_proc_prefixes=("/",) if name == "authz+ext_proc" else (),
                            authz_timeout_ms=1000, ext_proc_timeout_ms=1000)
        with EnvoyProcess(render_yaml(build_bootstrap(opts)), port, concurrency=args.envoy_concurrency) as envoy:
            url = f"{envoy.url}/bench/item"
            wrk(url, 4, 1.0, 1)  # warm-up: connections, JIT-free but caches
            _, p50_1, _, _ = wrk(url, 1, args.duration, 1)
            rps, p50, p99, errors = wrk(url, args.connections, args.duration, 2)
        return Result(name, rps, p50, p99, p50_1, errors)
    finally:
        for p in procs:
            p.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="Link processes behind Envoy")
    parser.add_argument("--envoy-concurrency", type=int, default=1)
    parser.add_argument("--scenarios", default="envoy-alone,grpc-noop,authz-minimal,authz-full,authz-full+meter,authz+ext_proc")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        if os.geteuid() != 0:
            print("wrk is required (apt-get install wrk)", file=sys.stderr)
            return 1
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    tmp = Path(tempfile.mkdtemp(prefix="stoa-bench-"))
    up_port = free_port()
    results: list[Result] = []
    broker = None
    if any(n.endswith("+meter") for n in args.scenarios.split(",")):
        from tests.harness.kafka import TansuBroker

        broker = TansuBroker()
        broker.start()
    try:
        with EnvoyProcess(upstream_bootstrap(up_port), up_port, concurrency=1):
            for name in args.scenarios.split(","):
                results.append(run_scenario(name, up_port, tmp, args, broker.bootstrap if broker else None))
                time.sleep(0.5)
    finally:
        if broker is not None:
            broker.stop()
    base = next((r for r in results if r.name == "envoy-alone"), results[0])
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"wrk {args.duration:.0f}s per run; Link workers={args.workers}, Envoy concurrency={args.envoy_concurrency}")
    print(f"{'scenario':<16}{'p50 1conn':>11}{'added':>9}{'req/s @' + str(args.connections):>12}"
          f"{'p50':>8}{'p99':>8}{'vs alone':>10}{'non-2xx':>9}")
    for r in results:
        added = r.p50_1conn_ms - base.p50_1conn_ms
        print(f"{r.name:<16}{r.p50_1conn_ms:>9.3f}ms{added:>7.3f}ms{r.rps:>12.0f}{r.p50_ms:>6.2f}ms{r.p99_ms:>6.2f}ms"
              f"{r.rps / base.rps:>9.2f}x{r.errors:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
