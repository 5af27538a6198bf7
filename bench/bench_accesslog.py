"""Access-log feed benchmark: what one finished request costs Link after Envoy reported it.

    python bench/bench_accesslog.py [--entries 20000] [--baseline REF [--rounds 5]]

Envoy streams finished requests to Link (``StreamAccessLogs``); each entry becomes a
``RequestOutcome`` for the sinks. This is Link CPU on every request, off the request
path but on the same event loop and core. Rows, microseconds per entry (best of 7):

  parse            the protobuf parse of the message's bytes (what grpc does before Link sees it): the floor
  outcome          ``outcome_from_entry``: the entry joined with Link's decision metadata
  metrics sink     + the request counters and latency histogram
  metering sink    + metering: offer, then one commit per slice (event encoding and the spool write)
  stream           the whole handler (``StreamAccessLogs``) with both sinks, as served

Each row prints its ratio to the floor. The entry is shaped as the HTTP transport leaves it
(every metadata value a string) with the request headers Envoy is configured to log.

With ``--baseline REF`` each round runs the measurement in a fresh interpreter for git revision
``REF`` and for this checkout, alternately, and prints the best of the rounds and this / baseline per row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, os.environ.get("STOA_BENCH_TREE", str(ROOT)))  # --baseline: the other revision's code

from envoy.config.core.v3 import base_pb2  # noqa: E402
from envoy.data.accesslog.v3 import accesslog_pb2  # noqa: E402
from envoy.service.accesslog.v3 import als_pb2  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402
from revisions import best_of_interleaved  # noqa: E402

from link.decision_metadata import link_key  # noqa: E402
from link.events import OutcomeBus  # noqa: E402
from link.grpc.accesslog import AccessLogService, outcome_from_entry  # noqa: E402
from link.grpc.authz import METADATA_NAMESPACE  # noqa: E402
from link.metering import EventOrigin, MeteringSink  # noqa: E402
from link.settings import MeteringSettings  # noqa: E402
from link.telemetry.metrics import RequestMetrics  # noqa: E402

PER_MESSAGE = 200  # a flush interval's worth of requests at a few thousand per second


def entry(i: int) -> accesslog_pb2.HTTPAccessLogEntry:
    e = accesslog_pb2.HTTPAccessLogEntry()
    c = e.common_properties
    c.start_time.FromNanoseconds(time.time_ns())
    c.time_to_last_rx_byte.FromMicroseconds(40)
    c.time_to_first_upstream_tx_byte.FromMicroseconds(420)
    c.time_to_last_upstream_rx_byte.FromMicroseconds(910)
    c.time_to_last_downstream_tx_byte.FromMicroseconds(980)
    c.duration.FromMicroseconds(985)
    c.downstream_remote_address.socket_address.address = "127.0.0.1"
    c.downstream_remote_address.socket_address.port_value = 40000 + i % 1000
    c.upstream_cluster = "upstream"
    c.route_name = "api"
    meta = {"decision_id": f"{i:026d}", link_key("outcome"): "success", link_key("tenant"): "acme",
            link_key("consumer"): "billing-app", link_key("subject"): "billing-app",
            link_key("credential"): "api_key", link_key("route"): "api", link_key("route_template"): "/api/{item}",
            link_key("api"): "items", link_key("scopes"): "items:read items:write", link_key("t_link_us"): "182",
            "policy_label": "kept by Envoy, skipped by Link"}
    s = struct_pb2.Struct()
    s.update(meta)
    c.metadata.filter_metadata[METADATA_NAMESPACE].CopyFrom(s)
    r = e.request
    r.request_method = base_pb2.GET
    r.scheme = "http"
    r.authority = "127.0.0.1:8080"
    r.path = f"/api/item?n={i}"
    r.request_id = f"{i:08x}-1111-4222-8333-444455556666"
    r.user_agent = "wrk"
    r.request_headers_bytes = 180
    r.request_headers["traceparent"] = f"00-{i:032x}-{i:016x}-01"
    e.response.response_code.value = 200
    e.response.response_headers_bytes = 120
    e.response.response_body_bytes = 2
    return e


def message(base: int) -> bytes:
    m = als_pb2.StreamAccessLogsMessage()
    m.identifier.log_name = "stoa_link"
    for i in range(PER_MESSAGE):
        m.http_logs.log_entry.add().CopyFrom(entry(base + i))
    return m.SerializeToString()


class _Broker:
    """Takes every batch at once: the benchmark measures Link's side, not a broker's."""

    last_error = ""
    connected = True

    async def connect(self) -> None:
        return None

    async def publish(self, records: Any) -> None:
        return None

    async def close(self, grace_s: float = 5.0) -> None:
        return None


def best_us(run: Callable[[], int], repeat: int = 7) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        n = run()
        best = min(best, (time.process_time() - t) / n * 1e6)
    return best


async def measure(n_entries: int) -> list[tuple[str, float]]:
    blobs = [message(k * PER_MESSAGE) for k in range(max(1, n_entries // PER_MESSAGE))]
    n = len(blobs) * PER_MESSAGE
    parse = als_pb2.StreamAccessLogsMessage.FromString
    messages = [parse(b) for b in blobs]
    entries = [e for m in messages for e in m.http_logs.log_entry]

    with tempfile.TemporaryDirectory(prefix="stoa-bench-als-") as spool:
        sink = MeteringSink(MeteringSettings(spool_dir=spool), EventOrigin("bench", "bench-1", "sidecar"),
                            publisher=_Broker())
        await sink.start()
        request_metrics = RequestMetrics()
        bus = OutcomeBus()
        bus.add(request_metrics)
        bus.add(sink)
        service = AccessLogService(bus)

        def r_parse() -> int:
            for b in blobs:
                parse(b)
            return n

        def r_outcome() -> int:
            for e in entries:
                outcome_from_entry(e)
            return n

        def r_metrics() -> int:
            for e in entries:
                request_metrics.offer(outcome_from_entry(e))
            return n

        def r_metering() -> int:
            for k in range(0, n, 32):
                for e in entries[k:k + 32]:
                    o = outcome_from_entry(e)
                    request_metrics.offer(o)
                    sink.offer(o)
                sink.commit()
            return n

        rows: list[tuple[str, float]] = [("parse", best_us(r_parse)), ("outcome", best_us(r_outcome)),
                                         ("metrics sink", best_us(r_metrics)),
                                         ("metering sink", best_us(r_metering))]
        best = float("inf")
        for _ in range(7):
            async def stream() -> AsyncIterator[als_pb2.StreamAccessLogsMessage]:
                for m in messages:
                    yield m

            t = time.process_time()
            await service.StreamAccessLogs(stream(), None)  # type: ignore[arg-type]
            best = min(best, (time.process_time() - t) / n * 1e6)
            await asyncio.sleep(0.05)  # let the sink publish and acknowledge what was committed
        rows.append(("stream", best))
        await sink.stop()

    return rows


def _round(tree: Path, entries: int) -> list[tuple[str, float]]:
    env = {**os.environ, "STOA_BENCH_TREE": str(tree)}
    out = subprocess.run([sys.executable, __file__, "--entries", str(entries), "--json"], capture_output=True,
                         text=True, check=True, env=env)
    return [(name, us) for name, us in json.loads(out.stdout.splitlines()[-1])]


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--entries", type=int, default=20_000)
    ap.add_argument("--baseline", metavar="REF", help="git revision to compare with, round by round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.json:
        print(json.dumps(asyncio.run(measure(args.entries))))
        return 0
    if not args.baseline:
        rows = asyncio.run(measure(args.entries))
        floor = rows[0][1]
        print(f"access-log feed, {args.entries:,} entries in messages of {PER_MESSAGE} (µs per entry, best of 7)")
        for name, us in rows:
            print(f"  {name:<14} {us:8.2f} µs   {us / floor:5.1f}x the parse")
        print(f"Link's own part of the feed (stream - parse): {rows[-1][1] - floor:.2f} µs per request")
        return 0
    names, med = best_of_interleaved(args.baseline, args.rounds, lambda tree: _round(tree, args.entries))
    print(f"access-log feed, µs per entry (best of {args.rounds} interleaved rounds; baseline {args.baseline})")
    print(f"  {'':<14} {'baseline':>9} {'this':>9} {'this/base':>9}")
    for i, name in enumerate(names):
        print(f"  {name:<14} {med['baseline'][i]:9.2f} {med['this'][i]:9.2f} {med['this'][i] / med['baseline'][i]:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
