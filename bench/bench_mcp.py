# ruff: noqa: E402
"""MCP server benchmark: tool calls and tool listing against a direct HTTP call to the same upstream.

    python bench/bench_mcp.py [--duration 3] [--connections 16] [--tools 10000]

Three processes: a minimal HTTP upstream (asyncio, answers a small JSON object),
the MCP server (``mcp_server.main.serve_async`` on uvloop, a Link pipeline with
identity, rate limiting and the response phase; policy and metering off), and
`wrk` as the load generator. Every figure is printed next to the direct call to
the upstream measured in the same run.

Targets (both protocol eras, Streamable HTTP answering JSON): tools/call overhead
<= 0.5 ms p50 at one connection over the direct call, >= 2,500 calls/s at 16
connections, tools/list with 10,000 registered tools <= 50 ms. Because the
machine may be shared, each run also prints the MCP server's own CPU time per
call (from /proc, independent of what else runs) and the ratio of every figure
to the direct call measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

import httpx
import yaml

from tests.harness.procs import free_port, managed, wait_for_port

_UPSTREAM = r'''
import asyncio, sys
BODY = b'{"ok":true,"items":[1,2,3],"source":"bench-upstream"}'
RESP = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, data):
        self.buf += data
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep: return
            n = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length": n = int(v)
            if len(rest) < n: return
            self.buf = rest[n:]
            self.t.write(RESP)
async def main():
    srv = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    await srv.serve_forever()
try:
    import uvloop; uvloop.run(main())
except ImportError:
    asyncio.run(main())
'''

_LAT = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)


@dataclass
class Run:
    name: str
    p50_1conn_ms: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float  # the MCP server's CPU (user + system) per call during the throughput run


def mcp_like(runs: list[Run]) -> list[Run]:
    return [r for r in runs[1:] if r.cpu_us > 0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, connections: int, duration: float, script: Path | None, threads: int = 1) -> tuple[float, ...]:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, int(duration))}s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {m.group(1): _to_ms(m.group(2), m.group(3)) for m in _LAT.finditer(out)}
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, lat.get("50", 0.0), lat.get("99", 0.0), float(m.group(1)) if m else 0.0


def lua(path: Path, body: str, headers: dict[str, str], unique_ids: bool = False) -> Path:
    """A wrk script POSTing ``body`` (with ``%d`` replaced by a fresh JSON-RPC id when asked)."""
    lines = ['wrk.method = "POST"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    if unique_ids:
        lines += ["math.randomseed(os.time())",
                  f"local fmt = {json.dumps(body)}",
                  "request = function() return wrk.format(nil, nil, nil, string.format(fmt, math.random(1, 2000000000))) end"]
    else:
        lines.append(f"wrk.body = {json.dumps(body)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def tool_manifests(upstream: str, bulk: int) -> list[dict[str, object]]:
    def tool(name: str, tenant: str, schema: dict[str, object]) -> dict[str, object]:
        return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "Tool", "metadata": {"name": name, "namespace": tenant},
                "spec": {"displayName": name, "description": f"Benchmark tool {name}", "endpoint": upstream,
                         "method": "POST", "inputSchema": schema}}

    schema = {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}}, "required": ["q"]}
    out = [tool("echo", "bench", schema)]
    out += [tool(f"bulk-{i:05d}", "bulk", {"type": "object", "properties": {"id": {"type": "string"}},
                                           "description": f"schema {i}"}) for i in range(bulk)]
    return out


def serve(config: str) -> None:
    """The MCP server process (``--serve CONFIG``)."""
    from link.settings import load_settings
    from mcp_server.main import serve as run

    run(load_settings(config, env={}))


async def mcp_session(url: str) -> str:
    async with httpx.AsyncClient() as http:
        r = await http.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}},
            headers={"accept": "application/json, text/event-stream"})
        sid = r.headers["mcp-session-id"]
        await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                        headers={"accept": "application/json, text/event-stream", "mcp-session-id": sid,
                                 "mcp-protocol-version": "2025-11-25"})
        return sid


async def first_list(url: str, sid: str) -> float:
    """ms of the first tools/list after start (descriptions shaped, policy evaluated per tool)."""
    headers = {"accept": "application/json, text/event-stream", "mcp-session-id": sid,
               "mcp-protocol-version": "2025-11-25"}
    async with httpx.AsyncClient(timeout=60) as http:
        start = time.perf_counter()
        r = await http.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "tools/list"}, headers=headers)
        _ = r.content
        return (time.perf_counter() - start) * 1000


async def list_latency(url: str, sid: str, rounds: int) -> tuple[float, float, int]:
    """p50 ms of a full tools/list answer (all bytes received), p50 ms to parse it here, and the tool count."""
    headers = {"accept": "application/json, text/event-stream", "mcp-session-id": sid,
               "mcp-protocol-version": "2025-11-25"}
    received: list[float] = []
    parsed: list[float] = []
    count = 0
    async with httpx.AsyncClient(timeout=30) as http:
        await http.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "tools/list"}, headers=headers)  # warm
        for i in range(rounds):
            start = time.perf_counter()
            r = await http.post(url, json={"jsonrpc": "2.0", "id": i + 1, "method": "tools/list"}, headers=headers)
            body = r.content
            received.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            text = body.decode()
            data = text if text.startswith("{") else next(line[5:] for line in text.splitlines()
                                                           if line.startswith("data:"))
            count = len(json.loads(data)["result"]["tools"])
            parsed.append((time.perf_counter() - start) * 1000)
    received.sort()
    parsed.sort()
    return received[len(received) // 2], parsed[len(parsed) // 2], count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--tools", type=int, default=10_000, help="registered tools for the tools/list figure")
    parser.add_argument("--sse-response", action="store_true",
                        help="Streamable HTTP answers POSTs with SSE streams (default: JSON)")
    parser.add_argument("--policy", action="store_true",
                        help="enable an embedded Rego policy (tools/list is then filtered per tool)")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    if shutil.which("wrk") is None:
        if os.geteuid() != 0:
            print("wrk is required (apt-get install wrk)", file=sys.stderr)
            return 1
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)

    tmp = Path(tempfile.mkdtemp(prefix="stoa-bench-mcp-"))
    up_port, mcp_port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{up_port}/echo"
    tools_dir = tmp / "tools"
    tools_dir.mkdir()
    (tools_dir / "tools.yaml").write_text(yaml.safe_dump_all(tool_manifests(upstream_url, args.tools)))
    policy = tmp / "policy.rego"
    policy.write_text("package envoy.authz\nimport rego.v1\ndefault allow := false\n"
                      "allow if input.stoa.tool.tenant in {\"bench\", \"bulk\"}\n")
    config = tmp / "mcp.yaml"
    config.write_text(yaml.safe_dump({
        "log_level": "warning",
        "registry": {"source": "files", "path": str(tools_dir), "reload_interval_s": 60},
        "mcp": {"host": "127.0.0.1", "port": mcp_port, "public_tenants": ["bench", "bulk"],
                "json_response": not args.sse_response},
        "policy": {"enabled": args.policy, "paths": [str(policy)]},
        "metering": {"enabled": False}, "snapshots": {"enabled": False},
        "server": {"grpc_address": "127.0.0.1:0", "admin_address": "127.0.0.1:0"},
    }))
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo",
                                                                         "arguments": {"q": "bench", "n": 1}}}
    with managed([sys.executable, "-c", _UPSTREAM, str(up_port)], log_path=tmp / "upstream.log"), \
            managed([sys.executable, str(Path(__file__).resolve()), "--serve", str(config)],
                    log_path=tmp / "mcp.log") as mcp:
        wait_for_port(up_port, timeout=15)
        wait_for_port(mcp_port, timeout=120, proc=mcp.proc)
        base = f"http://127.0.0.1:{mcp_port}"
        sid = asyncio.run(mcp_session(base + "/mcp"))
        mcp_headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                       "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
        scenarios = {
            "direct upstream": (upstream_url, lua(tmp / "direct.lua", json.dumps({"q": "bench", "n": 1}),
                                                  {"Content-Type": "application/json"})),
            "REST tools/call": (f"{base}/mcp/v1/tools/echo", lua(tmp / "rest.lua", json.dumps({"q": "bench", "n": 1}),
                                                                 {"Content-Type": "application/json"})),
            "MCP tools/call": (f"{base}/mcp", lua(tmp / "mcp.lua", json.dumps(call).replace('"id": 1', '"id": %d'),
                                                  mcp_headers, unique_ids=True)),
        }
        # 2026-07-28: one self-contained POST per call, no session.
        modern_call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "echo", "arguments": {"q": "bench", "n": 1},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}}}}
        scenarios["MCP 2026 call"] = (f"{base}/mcp", lua(
            tmp / "modern.lua", json.dumps(modern_call).replace('"id": 1', '"id": %d'),
            {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
             "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "echo"},
            unique_ids=True))
        runs: list[Run] = []
        for name, (url, script) in scenarios.items():
            wrk(url, 4, 1.0, script)  # warm-up
            _, p50_1, _, _ = wrk(url, 1, args.duration, script)
            cpu0 = cpu_seconds(mcp.proc.pid)
            rps, p50, p99, errors = wrk(url, args.connections, args.duration, script)
            cpu = cpu_seconds(mcp.proc.pid) - cpu0
            calls = rps * max(1, int(args.duration))
            runs.append(Run(name, p50_1, rps, p50, p99, int(errors), cpu / calls * 1e6 if calls else 0.0))
        first_list_ms = asyncio.run(first_list(base + "/mcp", sid))
        list_p50, parse_p50, listed = asyncio.run(list_latency(base + "/mcp", sid, 20))
        rest_list = lua(tmp / "list.lua", "", {})
        rest_list.write_text('wrk.method = "GET"\n')
        _, rest_list_p50, _, _ = wrk(f"{base}/mcp/v1/tools", 1, args.duration, rest_list)
        mcp_log = mcp.log_text()

    direct = runs[0]
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"wrk {args.duration:.0f}s per run, {args.connections} connections for throughput; "
          f"Streamable HTTP answers {'SSE' if args.sse_response else 'JSON'}; policy {'on' if args.policy else 'off'}")
    print(f"{'scenario':<18}{'p50 1conn':>11}{'overhead':>10}{'x direct':>10}{'calls/s':>10}{'x direct':>10}"
          f"{'p50':>9}{'p99':>9}{'server CPU/call':>17}{'non-2xx':>9}")
    for r in runs:
        cpu = f"{r.cpu_us:>13.0f} us" if r is not direct else f"{'-':>16}"
        print(f"{r.name:<18}{r.p50_1conn_ms:>9.3f}ms{r.p50_1conn_ms - direct.p50_1conn_ms:>8.3f}ms"
              f"{r.p50_1conn_ms / direct.p50_1conn_ms:>9.1f}x{r.rps:>10.0f}{r.rps / direct.rps:>9.3f}x"
              f"{r.p50_ms:>7.2f}ms{r.p99_ms:>7.2f}ms{cpu}{r.errors:>9}")
    for r in mcp_like(runs):
        print(f"{r.name}: the server spent {r.cpu_us:.0f} us of CPU per call, i.e. at most "
              f"{1e6 / r.cpu_us:.0f} calls/s on one free core (REST and MCP share one event loop)")
    print(f"first tools/list after start (per-tool shaping{', policy per tool' if args.policy else ''}): "
          f"{first_list_ms:.0f} ms")
    print(f"tools/list, {listed} tools: MCP p50 {list_p50:.1f} ms to receive the whole answer "
          f"(+{parse_p50:.1f} ms for this Python client to parse it), REST p50 {rest_list_p50:.1f} ms; "
          f"one direct call p50 {direct.p50_1conn_ms:.3f} ms")
    mcp_runs = [r for r in runs if r.name.startswith("MCP")]
    worst = max(r.p50_1conn_ms - direct.p50_1conn_ms for r in mcp_runs)
    slowest = min(r.rps for r in mcp_runs)
    print(f"targets (Streamable HTTP, both eras): overhead <= 0.5 ms p50 -> {worst:.3f} ms "
          f"{'OK' if worst <= 0.5 else 'MISSED'}; >= 2500 calls/s -> {slowest:.0f} "
          f"{'OK' if slowest >= 2500 else 'MISSED'}; "
          f"tools/list <= 50 ms -> {list_p50:.1f} ms {'OK' if list_p50 <= 50 else 'MISSED'}")
    if "Traceback" in mcp_log:
        print("the MCP server logged errors:\n" + mcp_log[-2000:], file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
