# ruff: noqa: E402
"""What each Kafka codec costs Link per metering event, on real encoded events.

    python bench/bench_compression.py [--events 400]

The Kafka client (aiokafka) compresses each record batch on the event loop, with
gzip always at level 9. This encodes ``--events`` metering events the way the
sink does (EventEncoder, fresh ids each), joins them as one batch payload and
compresses it with every codec Link can use: the figure per codec is the time
the loop is held for that batch, the CPU per event and the ratio. The baseline
in the same run is gzip at level 9 (what ``metering.compression: gzip`` costs).
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cramjam

from link.events import RequestOutcome
from link.metering.event import EventEncoder, EventOrigin
from link.model import Outcome

CODECS: dict[str, Callable[[bytes], bytes]] = {
    "gzip (aiokafka: level 9)": lambda p: gzip.compress(p, 9),
    "gzip level 1 (not selectable)": lambda p: gzip.compress(p, 1),
    "zstd": lambda p: bytes(cramjam.zstd.compress(p)),
    "lz4": lambda p: bytes(cramjam.lz4.compress_block(p)),
    "snappy": lambda p: bytes(cramjam.snappy.compress_raw(p)),
}


def events(n: int, varied: bool) -> bytes:
    """``varied``: several tenants, routes, statuses and latencies; else one hot route (the benchmark's shape)."""
    enc = EventEncoder(EventOrigin(gateway_id="gw-1", instance="link-0", mode="sidecar"))
    out = []
    for i in range(n):
        k = i % 7 if varied else 0
        outcome = RequestOutcome(
            request_id=str(uuid.uuid4()), timestamp=time.time(), method="GET", path=f"/api/invoices/inv-{i}",
            http_status=(200, 201, 404, 200, 429, 200, 503)[k], outcome=Outcome.SUCCESS, decision_id=uuid.uuid4().hex,
            tenant=f"tenant-{k}", consumer=f"app-{k}", subject=f"user-{i % 31 if varied else 0}",
            credential="api_key", route=f"route-{k}", api="billing", route_template=f"/api/r{k}/{{id}}",
            scopes=["invoices:read"], latency_ms=0.83 + (i % 13 if varied else 0) * 0.37, t_link_ms=0.09)
        out.append(enc.encode(outcome)[1])
    return b"".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=400, help="events in one batch (the sink sends up to 1,000)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    for varied in (False, True):
        run(events(args.events, varied), args.events, args.repeat,
            "varied tenants and routes" if varied else "one hot route")
    return 0


def run(payload: bytes, n: int, repeat: int, shape: str) -> None:
    print(f"\n{n} events ({shape}), {len(payload):,} bytes uncompressed; best of {repeat}")
    print(f"{'codec':32s} {'loop held':>10s} {'µs/event':>9s} {'ratio':>6s} {'x gzip-9':>9s}")
    base = 0.0
    for name, codec in CODECS.items():
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            compressed = codec(payload)
            best = min(best, time.perf_counter() - start)
        base = base or best
        print(f"{name:32s} {best * 1e3:8.2f}ms {best / n * 1e6:9.1f} {len(payload) / len(compressed):6.1f} "
              f"{best / base:9.3f}")


if __name__ == "__main__":
    sys.exit(main())
