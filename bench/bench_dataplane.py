# ruff: noqa: E402
"""Data-plane benchmark: Envoy alone, the no-op floors and Link's routes, interleaved in one run.

    python bench/bench_dataplane.py [--duration 5] [--rounds 3] [--transport http|grpc]
                                    [--metering on|off] [--decision-log on|off] [--snapshots on|off]

Every stack runs for the whole run; each round runs every scenario once (one
connection, then 16), so slow drift of a shared machine spreads over all of them,
and the figures printed are medians over rounds. The upstream is a second Envoy
answering with a direct response, so it is never the bottleneck. Load comes from
`wrk` (Debian package; installed if missing, as root).

Scenarios:
  envoy-alone     plain proxy, no Link filters (the baseline of "added" latency)
  noop-http       ext_authz http_service to a no-op asyncio+httptools+uvloop server (bench/noop_http_authz.py)
  noop-grpc       ext_authz gRPC to a no-op grpc.aio server (bench/noop_authz.py)
                  (the floors: one Python hop that decides nothing; no access-log stream)
  anon            Link, an anonymous route
  apikey          Link, API key + Rego + rate limit (the production shape)
  jwt             Link, RS256 JWT (local issuer, JWKS over HTTP) + Rego + rate limit
  contract        Link, JWT + POST of a 1 KiB JSON body validated against a UAC contract
  snapshot        Link, apikey on a route with error snapshots on (2xx answers: must cost nothing)
  apikey-nometer  apikey on a second Link with metering off (metering on vs off: must be noise)
  apikey-noals    (optional) apikey with Envoy's access-log stream to Link removed: what the feed costs
  apikey-als1m    (optional) apikey with Envoy's access-log buffer at 1 MiB (the default before 16 KiB):
                  what larger, rarer access-log messages cost the p99 (also apikey-als64k, apikey-als256k)
  snap-extproc    (optional) the snapshot route captured by ext_proc as before the tap: headers and bodies
  snap-extproc-hdrs (optional) ext_proc asking for response headers only: the floor of a design that
                  overrides the processing mode to fetch bodies on errors (mode_override)

Link's Python CPU per request comes from /proc/<pid>/stat of the Link process over
the 16-connection run (plus 0.5 s for the batched background work to land), less
what the process burns idle (measured before the rounds: timers and polls, which
a slow shared machine would otherwise spread over few requests); the per-phase
costs from Link's own stoa_link_phase_seconds, as deltas per scenario.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

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
from link.envoyconf.from_settings import envoy_options
from link.settings import load_settings
from tests.harness.envoy import EnvoyProcess
from tests.harness.procs import ManagedProcess, free_port, wait_for_port

API_KEY = "bench-key-0001"
HTTP_TRANSPORT = "authz_transport" in {f.name for f in fields(EnvoyOptions)}
CLK_TCK = os.sysconf("SC_CLK_TCK")

POLICY = """package envoy.authz

import rego.v1

default allow := false

allow if "bench:read" in input.stoa.principal.scopes

allow if input.stoa.route.name == "public"
"""

CONTRACT = {
    "name": "bench-orders", "version": "1.0.0", "tenant_id": "bench", "display_name": "Bench orders",
    "description": "A POST endpoint whose body is validated.", "status": "published", "classification": "H",
    "required_policies": ["rate-limit", "auth-jwt"],
    "endpoints": [{
        "path": "/orders", "methods": ["POST"], "operation_id": "createOrder",
        "backend_url": "http://127.0.0.1:1/orders",
        "input_schema": {
            "type": "object", "required": ["customer", "currency", "lines"], "additionalProperties": False,
            "properties": {
                "customer": {"type": "string", "minLength": 1},
                "currency": {"type": "string", "enum": ["EUR", "USD"]},
                "note": {"type": "string", "maxLength": 200},
                "lines": {"type": "array", "maxItems": 50, "items": {
                    "type": "object", "required": ["sku", "qty", "price"], "additionalProperties": False,
                    "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                                   "qty": {"type": "integer", "minimum": 1},
                                   "price": {"type": "number", "exclusiveMinimum": 0}}}},
            },
        },
    }],
}


def order_body(size: int = 1024) -> bytes:
    """A valid order of about ``size`` bytes."""
    doc: dict[str, Any] = {"customer": "ACME Corp", "currency": "EUR", "note": "bench", "lines": []}
    i = 0
    while len(json.dumps(doc)) < size - 40:
        doc["lines"].append({"sku": f"ABC-{i:04d}", "qty": 1 + i % 7, "price": 9.5 + i})
        i += 1
    raw = json.dumps(doc)
    doc["note"] = "b" * max(1, min(200, size - len(raw) + len("bench")))
    return json.dumps(doc).encode()


# -- stacks ------------------------------------------------------------------------------------------


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


def _without_access_log(node: Any) -> Any:
    """The floors answer no access-log stream: drop it from the generated bootstrap."""
    if isinstance(node, dict):
        node.pop("accessLog", None)
        for v in node.values():
            _without_access_log(v)
    elif isinstance(node, list):
        for v in node:
            _without_access_log(v)
    return node


@dataclass
class Stack:
    """One front Envoy and the decision process behind it (none for envoy-alone)."""

    name: str
    envoy: EnvoyProcess
    decider: ManagedProcess | None = None
    admin_url: str = ""  # Link's admin (for /metrics)

    def url(self, path: str) -> str:
        return f"{self.envoy.url}{path}"


def _link_settings(tmp: Path, args: argparse.Namespace, *, metering: bool, kafka: str | None, issuer: str,
                   envoy_admin: int, capture: str, tag: str) -> tuple[Path, dict[str, Any]]:
    keys = tmp / "keys.yaml"
    keys.write_text(yaml.safe_dump({hashlib.sha256(API_KEY.encode()).hexdigest():
                                    {"consumer": "bench-app", "tenant": "bench", "scopes": ["bench:read"]}}))
    (tmp / "policy.rego").write_text(POLICY)
    (tmp / "contracts").mkdir(exist_ok=True)
    (tmp / "contracts" / "orders.yaml").write_text(yaml.safe_dump(CONTRACT))
    grpc_port, http_port, admin_port = free_port(), free_port(), free_port()
    server: dict[str, Any] = {"grpc_address": f"127.0.0.1:{grpc_port}", "admin_address": f"127.0.0.1:{admin_port}",
                              "workers": args.workers}
    if HTTP_TRANSPORT:
        server |= {"authz_transport": args.transport, "http_address": f"127.0.0.1:{http_port}"}
    cfg: dict[str, Any] = {
        "log_level": "warning",
        "server": server,
        "routes": [
            {"name": "public", "prefix": "/public", "anonymous": True, "tenant": "bench"},
            {"name": "jwt", "prefix": "/jwt", "tenant": "bench", "credentials": ["jwt"]},
            # Its contract is classification H: Link requires a JWT there (required_policies auth-jwt).
            {"name": "orders", "prefix": "/orders", "tenant": "bench", "contract": "bench-orders",
             "credentials": ["jwt"]},
            {"name": "snap", "prefix": "/snap", "tenant": "bench", "snapshots": True, "credentials": ["api_key"]},
            {"name": "api", "prefix": "/api", "tenant": "bench", "credentials": ["api_key"]},
        ],
        "identity": {"api_keys_file": str(keys), "keycloak_url": issuer, "keycloak_realm": "stoa"},
        "policy": {"enabled": True, "paths": [str(tmp / "policy.rego")],
                   "decision_log": str(tmp / f"decisions-{tag}.log") if args.decision_log == "on" else None},
        "ratelimit": {"enabled": True, "tenant_default": "100000000/sec"},
        "contracts": {"enabled": True, "paths": [str(tmp / "contracts")]},
        "metering": {"enabled": metering, "bootstrap_servers": kafka if metering else None,
                     "spool_dir": str(tmp / f"spool-{tag}")},
        "snapshots": {"enabled": args.snapshots == "on", "db_path": str(tmp / f"snapshots-{tag}.db"),
                      "capture": capture, "envoy_admin_url": f"http://127.0.0.1:{envoy_admin}"},
        "registry": {"source": "none"},
        "mcp": {"enabled": False},
    }
    path = tmp / f"link-{tag}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, cfg


def _headers_only_ext_proc(boot: dict[str, Any]) -> dict[str, Any]:
    """The lower bound of "ext_proc asks for response headers, overrides the mode on errors": on the
    snapshot route ext_proc gets only the response headers (one stream and one message per request)."""
    for listener in boot["staticResources"]["listeners"]:
        for chain in listener["filterChains"]:
            for flt in chain["filters"]:
                for vhost in flt["typedConfig"].get("routeConfig", {}).get("virtualHosts", []):
                    for route in vhost["routes"]:
                        per = route.get("typedPerFilterConfig", {}).get("envoy.filters.http.ext_proc", {})
                        if route.get("name", "").startswith("body:/snap") and "overrides" in per:
                            per["overrides"]["processingMode"] = {
                                "requestHeaderMode": "SKIP", "responseHeaderMode": "SEND",
                                "requestBodyMode": "NONE", "responseBodyMode": "NONE",
                                "requestTrailerMode": "SKIP", "responseTrailerMode": "SKIP"}
    return boot


def start_link(name: str, tmp: Path, args: argparse.Namespace, up_port: int, *, metering: bool,
               kafka: str | None, issuer: str, capture: str = "tap",
               shapes: tuple[str, ...] = ("",), tree: Path | None = None) -> list[Stack]:
    """One Link process and, per entry of ``shapes``, an Envoy in front of it ("" = as generated;
    "hdrs" = ext_proc on the snapshot route asks for response headers only). With ``tree``, the Link
    process runs that checkout's code (``--baseline``); Envoy's configuration is this checkout's."""
    envoy_admins = [free_port() for _ in shapes]
    path, cfg = _link_settings(tmp, args, metering=metering, kafka=kafka, issuer=issuer,
                               envoy_admin=envoy_admins[0], capture=capture, tag=name)
    proc = ManagedProcess([sys.executable, "-m", "link.cli", "serve", "--config", str(path)],
                          log_path=tmp / f"{name}.log",
                          **({"env": {"PYTHONPATH": str(tree)}, "cwd": str(tree)} if tree else {}))  # type: ignore[arg-type]
    port = int(cfg["server"]["http_address" if HTTP_TRANSPORT and args.transport == "http"
                          else "grpc_address"].rpartition(":")[2])
    wait_for_port(port, timeout=60, proc=proc.proc)
    settings = load_settings(str(path), env={})
    stacks = []
    for shape, envoy_admin in zip(shapes, envoy_admins, strict=True):
        listen = free_port()
        opts = envoy_options(settings, listen_address="127.0.0.1", listen_port=listen, admin_port=envoy_admin,
                             upstream=f"http://127.0.0.1:{up_port}", authz_timeout_ms=1000,
                             ext_proc_timeout_ms=1000)
        boot = build_bootstrap(opts)
        if shape == "hdrs":
            boot = _headers_only_ext_proc(boot)
        elif shape == "noals":
            boot = _without_access_log(boot)
        elif shape.startswith("als"):  # als64k, als1m: another access-log buffer size
            size = int(shape[3:-1]) << (20 if shape.endswith("m") else 10)
            boot = build_bootstrap(replace(opts, access_log_buffer_bytes=size))
        envoy = EnvoyProcess(render_yaml(boot), listen, concurrency=args.envoy_concurrency).start()
        stacks.append(Stack(f"{name}{'-' + shape if shape else ''}", envoy, proc,
                            f"http://{cfg['server']['admin_address']}"))
    return stacks


def start_noop(name: str, tmp: Path, args: argparse.Namespace, up_port: int) -> Stack:
    port = free_port()
    script = "noop_http_authz.py" if name == "noop-http" else "noop_authz.py"
    proc = ManagedProcess([sys.executable, str(Path(__file__).with_name(script)), f"127.0.0.1:{port}"],
                          log_path=tmp / f"{name}.log")
    wait_for_port(port, timeout=30, proc=proc.proc)
    listen = free_port()
    extra: dict[str, Any] = {}
    if HTTP_TRANSPORT:
        extra = {"authz_transport": "http" if name == "noop-http" else "grpc", "link_http": (f"127.0.0.1:{port}",)}
    opts = EnvoyOptions(listen_address="127.0.0.1", listen_port=listen, admin_port=0, link=(f"127.0.0.1:{port}",),
                        upstream=f"http://127.0.0.1:{up_port}", authz_timeout_ms=1000, **extra)
    boot = _without_access_log(build_bootstrap(opts))
    envoy = EnvoyProcess(render_yaml(boot), listen, concurrency=args.envoy_concurrency).start()
    return Stack(name, envoy, proc)


def start_alone(tmp: Path, args: argparse.Namespace, up_port: int) -> Stack:
    listen = free_port()
    opts = EnvoyOptions(listen_address="127.0.0.1", listen_port=listen, admin_port=0, link_filters=False,
                        upstream=f"http://127.0.0.1:{up_port}")
    return Stack("envoy-alone", EnvoyProcess(render_yaml(build_bootstrap(opts)), listen,
                                             concurrency=args.envoy_concurrency).start())


# -- load and measurement ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as fh:
        parts = fh.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (/proc/stat)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


_LAT = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def _to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


@dataclass
class Load:
    rps: float
    p50: float
    p99: float
    requests: int
    errors: int
    wrk_cpu_s: float


def wrk(url: str, connections: int, duration: float, headers: dict[str, str], script: Path | None) -> Load:
    argv = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    if script is not None:
        argv += ["-s", str(script)]
    proc = subprocess.Popen([*argv, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    lat = {m.group(1): _to_ms(m.group(2), m.group(3)) for m in _LAT.finditer(out)}
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors:.*", out)
    if m:
        errors += sum(int(x) for x in re.findall(r"\d+", m.group(0)))
    return Load(rps, lat.get("50", 0.0), lat.get("99", 0.0), total, errors, usage.ru_utime + usage.ru_stime)


def scrape(admin_url: str) -> dict[str, float]:
    """Link's phase and decision histograms: {'phase:policy:sum': s, 'phase:policy:count': n, …}."""
    if not admin_url:
        return {}
    with urllib.request.urlopen(f"{admin_url}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for m in re.finditer(r'^stoa_link_phase_seconds_(sum|count)\{phase="([^"]+)"\} ([\d.e+-]+)$', text, re.M):
        out[f"phase:{m.group(2)}:{m.group(1)}"] = float(m.group(3))
    for m in re.finditer(r'^stoa_link_decision_seconds_(sum|count)\{entry="([^"]+)"\} ([\d.e+-]+)$', text, re.M):
        key = f"decision:all:{m.group(1)}"
        out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


@dataclass
class Scenario:
    name: str
    stack: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    script: Path | None = None  # wrk Lua script (POST bodies)


@dataclass
class Sample:
    p50_1: float
    p99_1: float
    rps: float
    p99_16: float
    errors: int
    link_us: float  # decision process CPU per request (µs)
    envoy_us: float
    upstream_us: float
    wrk_us: float
    shares: dict[str, float]  # process -> share of one core during the 16-connection run
    phases: dict[str, float]  # metric deltas
    others: float  # share of the machine used by processes not in this benchmark


def _py_spy_path() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def _py_spy(stack: Stack, sc: Scenario, args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    """``--profile SCENARIO``: sample the decision process with py-spy during the 16-connection run."""
    if args.profile != sc.name or stack.decider is None:
        return None
    spy = _py_spy_path()
    assert spy is not None  # checked before the run
    out = Path(args.profile_out or f"profile-{sc.name}.txt")
    print(f"py-spy: sampling {sc.name} into {out}", flush=True)
    return subprocess.Popen([spy, "record", "-p", str(stack.decider.pid), "-d", str(max(1, int(args.duration))),
                             "-r", "200", "-f", "raw", "-o", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def idle_rates(stacks: dict[str, Stack], seconds: float = 3.0) -> dict[int, float]:
    """CPU seconds per second each decision process burns with no traffic (timers, polls, background
    flushes): subtracted from a run's CPU so "µs per request" is what a request adds."""
    pids = {s.decider.pid for s in stacks.values() if s.decider is not None}
    before = {p: cpu_seconds(p) for p in pids}
    time.sleep(seconds)
    return {p: max(0.0, cpu_seconds(p) - before[p]) / seconds for p in pids}


def measure(sc: Scenario, stack: Stack, upstream: EnvoyProcess, args: argparse.Namespace,
            idle: dict[int, float]) -> Sample:
    url = stack.url(sc.path)
    one = wrk(url, 1, args.duration, sc.headers, sc.script)
    before = scrape(stack.admin_url)
    pids = {"link": stack.decider.pid if stack.decider else None, "envoy": stack.envoy.proc.pid,  # type: ignore[union-attr]
            "upstream": upstream.proc.pid}  # type: ignore[union-attr]
    c0 = {k: cpu_seconds(p) for k, p in pids.items() if p}
    m0 = machine_busy()
    spy = _py_spy(stack, sc, args)
    t0 = time.monotonic()
    many = wrk(url, args.connections, args.duration, sc.headers, sc.script)
    wall = time.monotonic() - t0
    if spy is not None:
        spy.wait(60)
    time.sleep(0.5)  # the decision log, access log and metering work in batches: let the last one land
    c1 = {k: cpu_seconds(p) for k, p in pids.items() if p}
    m1 = machine_busy()
    after = scrape(stack.admin_url)
    used = {k: c1[k] - c0[k] for k in c0}
    if stack.decider is not None:
        used["link"] = max(0.0, used["link"] - idle.get(stack.decider.pid, 0.0) * (wall + 0.5))
    n = max(1, many.requests)
    phases = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    shares = {k: v / wall for k, v in used.items()} | {"wrk": many.wrk_cpu_s / wall}
    # Everything else the machine did meanwhile (other users of a shared machine), as a share of all cores.
    others = max(0.0, (m1[0] - m0[0]) - sum(used.values()) - many.wrk_cpu_s) / max(1e-9, m1[1] - m0[1])
    return Sample(one.p50, one.p99, many.rps, many.p99, one.errors + many.errors,
                  used.get("link", 0.0) / n * 1e6, used["envoy"] / n * 1e6, used["upstream"] / n * 1e6,
                  many.wrk_cpu_s / n * 1e6, shares, phases, others)


# -- report ---------------------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def spread(values: list[float]) -> float:
    """Relative spread over rounds ((max - min) / median): the run's own noise."""
    m = med(values)
    return (max(values) - min(values)) / m if values and m else 0.0


def report(results: dict[str, list[Sample]], args: argparse.Namespace, load: dict[str, Any]) -> None:
    def agg(name: str, get: Callable[[Sample], float]) -> float:
        return med([get(s) for s in results.get(name, [])])

    base = "envoy-alone"
    floor = "noop-http" if args.transport == "http" else "noop-grpc"
    alone_p50 = agg(base, lambda s: s.p50_1)
    alone_rps = agg(base, lambda s: s.rps)
    floor_added = agg(floor, lambda s: s.p50_1) - alone_p50
    floor_rps = agg(floor, lambda s: s.rps)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"wrk {args.duration:.0f}s per run, {args.rounds} interleaved rounds (medians); transport={args.transport}, "
          f"metering={args.metering}, decision log={args.decision_log}, snapshots={args.snapshots}; "
          f"Link workers={args.workers}, Envoy concurrency={args.envoy_concurrency}")
    print(f"load: before {load['before']}; after {load['after']}; other processes used "
          f"{load['others']:.0%} of the machine (median over the 16-connection runs)")
    print(f"idle CPU of each decision process (share of a core, subtracted from its per-request CPU): "
          f"{load.get('idle', '')}")
    head = (f"{'scenario':<18}{'p50 1c':>8}{'added':>8}{'p99 1c':>8}{'req/s@' + str(args.connections):>10}"
            f"{'p99@16':>8}{'Link µs':>9}{'Envoy µs':>9}{'x alone':>8}{'x floor':>8}{'added/floor':>12}"
            f"{'spread':>7}{'errors':>7}")
    print(head)
    for name, samples in results.items():
        p50 = agg(name, lambda s: s.p50_1)
        added = p50 - alone_p50
        rps = agg(name, lambda s: s.rps)
        ratio_floor = f"{rps / floor_rps:.2f}" if floor_rps and name != base else "-"
        added_floor = f"{added / floor_added:.2f}" if floor_added > 0 and name not in (base, floor) else "-"
        print(f"{name:<18}{p50:>6.3f}ms{added:>6.3f}ms{agg(name, lambda s: s.p99_1):>6.2f}ms{rps:>10.0f}"
              f"{agg(name, lambda s: s.p99_16):>6.2f}ms{agg(name, lambda s: s.link_us):>9.0f}"
              f"{agg(name, lambda s: s.envoy_us):>9.0f}{rps / alone_rps if alone_rps else 0:>8.2f}"
              f"{ratio_floor:>8}{added_floor:>12}{spread([s.rps for s in samples]):>7.0%}"
              f"{sum(s.errors for s in samples):>7}")

    print("\nLink's phases, mean µs per decision (from stoa_link_phase_seconds, deltas per scenario):")
    for name, samples in results.items():
        totals: dict[str, float] = {}
        for s in samples:
            for k, v in s.phases.items():
                totals[k] = totals.get(k, 0.0) + v
        phases = sorted({k.split(":")[1] for k in totals if k.startswith("phase:")})
        if not phases:
            continue
        parts = []
        for ph in [*phases, "all"]:
            kind = "decision" if ph == "all" else "phase"
            count = totals.get(f"{kind}:{ph}:count", 0.0)
            if count:
                parts.append(f"{ph} {totals[f'{kind}:{ph}:sum'] / count * 1e6:.1f}")
        print(f"  {name:<18}" + ", ".join(parts))

    print("\nWho is busy at 16 connections (share of one core, medians):")
    for name in results:
        shares: dict[str, list[float]] = {}
        for s in results[name]:
            for k, v in s.shares.items():
                shares.setdefault(k, []).append(v)
        print(f"  {name:<18}" + ", ".join(f"{k} {med(v):.0%}" for k, v in shares.items()))

    print("\nTargets (benchmark output, not timed tests):")

    def check(label: str, value: float, limit: float, unit: str, higher_is_better: bool = False) -> None:
        ok = value >= limit if higher_is_better else value <= limit
        sign = ">=" if higher_is_better else "<="
        print(f"  {'PASS' if ok else 'MISS'}  {label:<46} {value:>9.3f}{unit}  (target {sign} {limit}{unit})")

    for name in ("apikey", "jwt"):
        if name in results:
            check(f"{name}: added p50 at 1 conn", agg(name, lambda s: s.p50_1) - alone_p50, 0.30, " ms")
            check(f"{name}: req/s at {args.connections} conns", agg(name, lambda s: s.rps), 6000, "", True)
            check(f"{name}: Link CPU per request", agg(name, lambda s: s.link_us), 100, " µs")
    if "contract" in results:
        check("contract POST 1 KiB: added p50", agg("contract", lambda s: s.p50_1) - alone_p50, 0.45, " ms")
        check(f"contract POST 1 KiB: req/s at {args.connections}", agg("contract", lambda s: s.rps), 4000, "", True)
    if "apikey" in results:
        label = f"apikey p99 at 1 conn (decision log {args.decision_log}, metering {args.metering})"
        check(label, agg("apikey", lambda s: s.p99_1), 2.0, " ms")
    for on, off, what in (("snapshot", "apikey", "snapshots on (2xx) vs off"),
                          ("apikey", "apikey-nometer", "metering on vs off")):
        if on in results and off in results:
            a = [s.rps for s in results[on]]
            b = [s.rps for s in results[off]]
            diff = (med(a) - med(b)) / med(b) if med(b) else 0.0  # negative: "on" is slower
            noise = max(spread(a), spread(b), 0.05)
            verdict = "PASS" if abs(diff) <= noise else "MISS"
            print(f"  {verdict}  {what + ': req/s, on vs off':<46} {diff:>+9.1%}   (noise of this run ±{noise:.0%})")

    if "apikey" in results:
        link_us = agg("apikey", lambda s: s.link_us)
        envoy_us = agg("apikey", lambda s: s.envoy_us)
        if link_us and envoy_us:
            per_req = link_us + envoy_us
            workers = max(1, round(4 * link_us / per_req))
            print(f"\nPer request on the apikey route: Link {link_us:.0f} µs + Envoy {envoy_us:.0f} µs of CPU. "
                  f"On a 4-core node given to the pod: server.workers={workers} and Envoy --concurrency "
                  f"{max(1, 4 - workers)} balance the two, for at most ~{4e6 / per_req:,.0f} req/s "
                  f"(CPU-bound estimate: 4 cores / per-request CPU; the upstream gateway needs cores of its own).")


# apikey through another Envoy in front of the same Link: without the access-log stream, other buffer sizes.
_SHAPED = ("apikey-noals", "apikey-als64k", "apikey-als256k", "apikey-als1m")
_BASED = ("anon", "apikey", "jwt", "contract", "snapshot")  # the routes --baseline runs on both revisions


def against_baseline(results: dict[str, list[Sample]], based: list[str], ref: str) -> None:
    """this/base per round (the two ran back to back in each round), then the median and range over rounds."""
    print(f"\nAgainst {ref} (this / base, per round, then median [min-max] over rounds; below 1 is better "
          "for CPU and p50/p99, above 1 for req/s):")
    getters: dict[str, Callable[[Sample], float]] = {
        "Link µs": lambda s: s.link_us, "req/s@16": lambda s: s.rps, "p50 1c": lambda s: s.p50_1,
        "p99 1c": lambda s: s.p99_1}
    for name in based:
        parts = []
        for label, get in getters.items():
            ratios = [get(a) / get(b) for a, b in zip(results[name], results[f"{name}@base"], strict=True) if get(b)]
            if ratios:
                parts.append(f"{label} {med(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]")
        print(f"  {name:<18}" + ", ".join(parts))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--transport", choices=["http", "grpc"], default="http" if HTTP_TRANSPORT else "grpc")
    parser.add_argument("--metering", choices=["on", "off"], default="on", help="through a real tansu broker")
    parser.add_argument("--decision-log", choices=["on", "off"], default="on")
    parser.add_argument("--snapshots", choices=["on", "off"], default="on")
    parser.add_argument("--workers", type=int, default=1, help="Link processes (server.workers)")
    parser.add_argument("--envoy-concurrency", type=int, default=1)
    parser.add_argument("--scenarios", default="envoy-alone,noop-http,noop-grpc,anon,apikey,jwt,contract,snapshot,"
                                               "apikey-nometer")
    parser.add_argument("--profile", metavar="SCENARIO", help="py-spy the decision process during this scenario "
                        "(pip install py-spy); collapsed stacks go to --profile-out")
    parser.add_argument("--profile-out", metavar="FILE")
    parser.add_argument("--baseline", metavar="REF", help="also run Link's routes on git revision REF's code, "
                        "interleaved (scenarios NAME@base), and print this/base per round")
    args = parser.parse_args()
    if args.transport == "http" and not HTTP_TRANSPORT:
        print("this build has no HTTP ext_authz transport: use --transport grpc", file=sys.stderr)
        return 2
    names = [n for n in args.scenarios.split(",") if n]
    if not HTTP_TRANSPORT:
        names = [n for n in names if n != "noop-http"]
    if args.metering == "off":
        names = [n for n in names if n != "apikey-nometer"]
    if args.profile and _py_spy_path() is None:
        print("--profile needs py-spy (pip install py-spy)", file=sys.stderr)
        return 1
    if shutil.which("wrk") is None:
        if os.geteuid() != 0:
            print("wrk is required (apt-get install wrk)", file=sys.stderr)
            return 1
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    tmp = Path(tempfile.mkdtemp(prefix="stoa-bench-"))
    load = {"before": Path("/proc/loadavg").read_text().strip()}
    stacks: dict[str, Stack] = {}
    broker = idp = None
    try:
        from tests.harness.oidc import OidcServer

        idp = OidcServer().start()
        token = idp.issuer.token(sub="bench-user", scope="bench:read", lifetime=24 * 3600)
        kafka = None
        if args.metering == "on":
            from tests.harness.kafka import TansuBroker

            broker = TansuBroker()
            broker.start()
            kafka = broker.bootstrap
        up_port = free_port()
        upstream = EnvoyProcess(upstream_bootstrap(up_port), up_port, concurrency=1).start()
        wanted = set(names)
        if "envoy-alone" in wanted:
            stacks["envoy-alone"] = start_alone(tmp, args, up_port)
        for floor in ("noop-http", "noop-grpc"):
            if floor in wanted:
                stacks[floor] = start_noop(floor, tmp, args, up_port)
        if wanted & {"anon", "apikey", "jwt", "contract", "snapshot", *_SHAPED}:
            shapes = ("", *(n.removeprefix("apikey-") for n in names if n in _SHAPED))
            for stack in start_link("link", tmp, args, up_port, metering=args.metering == "on", kafka=kafka,
                                    issuer=idp.keycloak_url, shapes=shapes):
                stacks[stack.name] = stack
        based = [n for n in names if n in _BASED] if args.baseline else []
        if based:
            from revisions import checkout

            (tmp / "baseline").mkdir()
            tree = checkout(args.baseline, tmp / "baseline")
            [stacks["link-base"]] = start_link("link-base", tmp, args, up_port, metering=args.metering == "on",
                                               kafka=kafka, issuer=idp.keycloak_url, tree=tree)
        if "apikey-nometer" in wanted:
            [stacks["link-nometer"]] = start_link("link-nometer", tmp, args, up_port, metering=False, kafka=None,
                                                  issuer=idp.keycloak_url)
        if wanted & {"snap-extproc", "snap-extproc-hdrs"}:
            # The alternatives to the tap, measured side by side (same Link settings, snapshots.capture=ext_proc).
            for stack in start_link("link-extproc", tmp, args, up_port, metering=args.metering == "on",
                                    kafka=kafka, issuer=idp.keycloak_url, capture="ext_proc", shapes=("", "hdrs")):
                stacks[stack.name] = stack
        post = tmp / "post.lua"
        post.write_text('wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\n'
                        f"wrk.body = {json.dumps(order_body().decode())}\n")
        key = {"x-api-key": API_KEY}
        catalog = {
            "envoy-alone": Scenario("envoy-alone", "envoy-alone", "/api/item", key),
            "noop-http": Scenario("noop-http", "noop-http", "/api/item", key),
            "noop-grpc": Scenario("noop-grpc", "noop-grpc", "/api/item", key),
            "anon": Scenario("anon", "link", "/public/item"),
            "apikey": Scenario("apikey", "link", "/api/item", key),
            "jwt": Scenario("jwt", "link", "/jwt/item", {"authorization": f"Bearer {token}"}),
            "contract": Scenario("contract", "link", "/orders", {"authorization": f"Bearer {token}"}, post),
            "snapshot": Scenario("snapshot", "link", "/snap/item", key),
            "apikey-nometer": Scenario("apikey-nometer", "link-nometer", "/api/item", key),
            **{n: Scenario(n, "link-" + n.removeprefix("apikey-"), "/api/item", key) for n in _SHAPED},
            "snap-extproc": Scenario("snap-extproc", "link-extproc", "/snap/item", key),
            "snap-extproc-hdrs": Scenario("snap-extproc-hdrs", "link-extproc-hdrs", "/snap/item", key),
        }
        for n in based:
            catalog[f"{n}@base"] = Scenario(f"{n}@base", "link-base", catalog[n].path, catalog[n].headers,
                                            catalog[n].script)
        scenarios = [sc for n in names for sc in (catalog[n], *([catalog[f"{n}@base"]] if n in based else []))]
        for sc in scenarios:  # warm-up: connections, caches, JWKS, the first policy evaluation
            wrk(stacks[sc.stack].url(sc.path), 4, 1.0, sc.headers, sc.script)
        results: dict[str, list[Sample]] = {sc.name: [] for sc in scenarios}
        idle = idle_rates(stacks)
        load["idle"] = ", ".join(f"{name} {idle[s.decider.pid]:.1%}" for name, s in stacks.items()
                                 if s.decider is not None)
        for r in range(args.rounds):
            # Odd rounds run the list backwards: a scenario is not always just after the same neighbour.
            for sc in scenarios if r % 2 == 0 else scenarios[::-1]:
                sample = measure(sc, stacks[sc.stack], upstream, args, idle)
                results[sc.name].append(sample)
                print(f"round {r + 1}/{args.rounds} {sc.name:<18} p50 {sample.p50_1:.3f} ms, "
                      f"{sample.rps:,.0f} req/s, Link {sample.link_us:.0f} µs/req", flush=True)
        load["after"] = Path("/proc/loadavg").read_text().strip()
        load["others"] = med([s.others for samples in results.values() for s in samples])
        report(results, args, load)
        if based:
            against_baseline(results, based, args.baseline)
        upstream.stop()
    finally:
        stopped: set[int] = set()
        for stack in stacks.values():
            stack.envoy.stop()
            if stack.decider is not None and stack.decider.pid not in stopped:
                stopped.add(stack.decider.pid)
                stack.decider.stop()
        if broker is not None:
            broker.stop()
        if idp is not None:
            idp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
