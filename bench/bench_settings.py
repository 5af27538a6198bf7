"""What building the settings costs at start-up, against another revision of the code in the same run.

    python bench/bench_settings.py --baseline REF [--rounds 21]

Each round starts a fresh interpreter for this checkout and for ``REF`` (``git archive`` of its
``link/`` and ``mcp_server/``), alternately, and times ``stoa-link serve``'s path to its settings
object: import ``link.cli``, parse the arguments, ``settings_from_args`` (the pod's settings file,
the platform's variables, a few flags). Then 100 more ``load_settings`` calls in the same process
(warm). Prints medians per revision and the ratio to the baseline. Start-up only: settings are
built once per process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from revisions import checkout

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "deploy" / "overlays" / "kong" / "link.yaml"
ENV = {"GATEWAY_MODE": "sidecar", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "METERING_ENABLED": "true",
       "GATEWAY_PORT": "3001", "STOA_MCP_ENABLED": "true", "STOA_MCP_HOST": "127.0.0.1",
       "STOA_CONTROLPLANE_ENVIRONMENT": "production", "STOA_IDENTITY_AUDIENCES": "a,b",
       "STOA_RATELIMIT_TENANTS": "{acme: 10/s}"}
ROUND = r'''
import os, sys, time
t0 = time.perf_counter()
from link.cli import build_parser, settings_from_args
from link.settings import load_settings
args = build_parser().parse_args(["serve", "--config", sys.argv[1], "--metering-topic", "t",
                                  "--server-workers", "1", "--mode", "sidecar"])
t1 = time.perf_counter()
settings_from_args(args)
t2 = time.perf_counter()
for _ in range(100):
    load_settings(sys.argv[1], overrides={"metering.topic": "t", "server.workers": "1", "mode": "sidecar"})
t3 = time.perf_counter()
print((t2 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 10)
'''


def _round(tree: Path) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOA_")}
    env.update(ENV, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", ROUND, str(CONFIG)], capture_output=True, text=True, check=True,
                         env=env, cwd=tree)
    return [float(x) for x in out.stdout.split()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, metavar="REF", help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=21)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"baseline": checkout(opts.baseline, Path(tmp)), "this": ROOT}
        rows: dict[str, list[list[float]]] = {name: [] for name in trees}
        for _ in range(opts.rounds):
            for name, tree in trees.items():
                rows[name].append(_round(tree))
    med = {name: [statistics.median(col) for col in zip(*r, strict=True)] for name, r in rows.items()}
    for name in trees:
        start, build, warm = med[name]
        print(f"{name:8} start-up to settings {start:7.1f} ms | settings_from_args {build:6.1f} ms | "
              f"warm load_settings {warm:6.2f} ms  (medians of {opts.rounds})")
    ratios = [this / base for this, base in zip(med["this"], med["baseline"], strict=True)]
    print("this / baseline: start-up {:.3f} | settings_from_args {:.2f} | warm load_settings {:.2f}".format(*ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
