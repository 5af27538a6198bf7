# ruff: noqa: E402
"""Link's decision pipeline in-process: CPU per decision and per phase, with no transport around it.

    python bench/bench_pipeline.py [-n 20000] [--decision-log on|off]

The API-key + Rego + rate-limit route of bench_dataplane.py, decided N times in one
event loop (the decision log, when on, writes to a temporary file in the
background as in production). Prints Python CPU per decision (process time, the
decision log's encoding included) and the mean of each phase's own timer; the
baseline in the same run is the same loop with every phase removed (route
resolution, response phase, metrics: the pipeline's fixed cost).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml

from link.app import LinkApp
from link.heap import freeze_start_up_heap
from link.model import Request
from link.settings import load_settings

API_KEY = "bench-key-0001"
POLICY = ('package envoy.authz\n\nimport rego.v1\n\ndefault allow := false\n\n'
          'allow if "bench:read" in input.stoa.principal.scopes\n')
HEADERS = {"x-api-key": API_KEY, "host": "127.0.0.1:8080", "user-agent": "wrk", "accept": "*/*",
           "x-forwarded-proto": "http"}


def settings_file(tmp: Path, decision_log: bool, bare: bool) -> Path:
    keys = tmp / "keys.yaml"
    keys.write_text(yaml.safe_dump({hashlib.sha256(API_KEY.encode()).hexdigest():
                                    {"consumer": "bench-app", "tenant": "bench", "scopes": ["bench:read"]}}))
    (tmp / "policy.rego").write_text(POLICY)
    cfg = {
        "routes": [{"name": "bench", "prefix": "/", "tenant": "bench", "anonymous": bare}],
        "identity": {"api_keys_file": str(keys)},
        "policy": {"enabled": not bare, "paths": [str(tmp / "policy.rego")],
                   "decision_log": str(tmp / "decisions.log") if decision_log and not bare else None},
        "ratelimit": {"enabled": not bare, "tenant_default": "100000000/sec"},
        "contracts": {"enabled": False}, "metering": {"enabled": False}, "snapshots": {"enabled": False},
        "registry": {"source": "none"}, "mcp": {"enabled": False},
    }
    path = tmp / ("bare.yaml" if bare else "link.yaml")
    path.write_text(yaml.safe_dump(cfg))
    return path


async def run(path: Path, n: int) -> tuple[float, dict[str, float]]:
    app = LinkApp(load_settings(str(path), env={}), plugins=())
    await app.start()
    freeze_start_up_heap()  # as `stoa-link serve` does once started
    try:
        def request(i: int) -> Request:
            return Request(method="GET", path="/bench/item", headers={**HEADERS, "x-request-id": f"r-{i}"},
                           host="127.0.0.1")

        for i in range(2000):  # warm-up: caches, the first evaluation
            await app.pipeline.run(request(i))
        sums: dict[str, int] = {}
        start = time.process_time()
        for i in range(n):
            result = await app.pipeline.run(request(i))
            for phase, ns in result.ctx.timings_ns.items():
                sums[phase] = sums.get(phase, 0) + ns
            if i % 256 == 0:
                await asyncio.sleep(0)  # let the decision log's writer run, as between real requests
        assert result.decision.allowed, result.decision
        await asyncio.sleep(0.3)  # the last batch of the decision log
        cpu = time.process_time() - start
    finally:
        await app.stop()
    return cpu / n * 1e6, {k: v / n / 1000 for k, v in sums.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--decision-log", choices=["on", "off"], default="on")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="stoa-bench-pipeline-"))
    import uvloop

    base_us, _ = uvloop.run(run(settings_file(tmp, False, True), args.n))
    full_us, phases = uvloop.run(run(settings_file(tmp, args.decision_log == "on", False), args.n))
    print(f"pipeline, API key + Rego + rate limit, decision log {args.decision_log}: "
          f"{full_us:.1f} µs CPU per decision (baseline, no phases: {base_us:.1f} µs; "
          f"ratio {full_us / base_us:.1f}x)")
    print("phases (mean µs, wall): " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
