"""Metering benchmark: offer() cost, sustained throughput to a real broker, a broker outage.

    python bench/bench_metering.py [--events 200000]

Starts its own tansu broker on a free loopback port. Prints:
1. the cost of ``offer()`` (and of the outcome bus with the sink) against
   ``deque.append`` measured in the same run;
2. events per second published to the broker and acknowledged (acks=all),
   checked against the topic's end offsets (target: >= 20,000/s);
3. with the broker down: the queue stays at its cap or below, process memory
   stays bounded and the spool grows on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from link.events import OutcomeBus, RequestOutcome  # noqa: E402
from link.metering import EventOrigin, MeteringSink  # noqa: E402
from link.model import Outcome  # noqa: E402
from link.settings import MeteringSettings  # noqa: E402
from tests.harness.kafka import TansuBroker  # noqa: E402
from tests.harness.procs import free_port  # noqa: E402

ORIGIN = EventOrigin(gateway_id="bench", instance="bench-1", mode="sidecar")


def outcomes(n: int) -> list[RequestOutcome]:
    now = time.time()
    return [
        RequestOutcome(
            request_id=f"{i:032x}", timestamp=now, method="GET", path=f"/invoices/{i}", http_status=200,
            outcome=Outcome.SUCCESS, tenant=f"tenant-{i % 10}", consumer=f"app-{i % 50}",
            subject=f"user-{i % 500}", route="invoices", route_template="/invoices/{id}", api="billing",
            scopes=["invoices:read"], roles=["viewer"], latency_ms=1.25, t_gateway_ms=0.4,
            t_backend_ms=0.85, request_size_bytes=320, response_size_bytes=1450, trace_id=f"{i:032x}",
        )
        for i in range(n)
    ]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def settings(bootstrap: str, spool: str, **kw: Any) -> MeteringSettings:
    return MeteringSettings(bootstrap_servers=bootstrap, spool_dir=spool, **kw)


def per_call_ns(fn: Any, items: list[RequestOutcome], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter_ns()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter_ns() - start) / len(items))
    return best


async def bench_offer(n: int, tmp: str) -> None:
    items = outcomes(n)
    sink = MeteringSink(settings("127.0.0.1:9", tmp, queue_max=n + 100), ORIGIN)  # never started: queue only

    def offer(o: RequestOutcome) -> None:
        sink.offer(o)
        if len(sink._queue) >= n:
            sink._queue.clear()

    baseline_q: deque[RequestOutcome] = deque()

    def baseline(o: RequestOutcome) -> None:
        baseline_q.append(o)
        if len(baseline_q) >= n:
            baseline_q.clear()

    empty_bus = OutcomeBus()
    metered_bus = OutcomeBus()
    metered_bus.add(sink)
    base_ns = per_call_ns(baseline, items)
    offer_ns = per_call_ns(offer, items)
    bus_off_ns = per_call_ns(empty_bus.offer, items)
    sink._queue.clear()
    bus_on_ns = per_call_ns(lambda o: (metered_bus.offer(o), sink._queue.clear() if len(sink._queue) >= n else None),
                            items)
    print("1. request-path cost (best of 5 runs of %d calls)" % n)
    print(f"   deque.append baseline      {base_ns:8.1f} ns/call")
    print(f"   MeteringSink.offer          {offer_ns:8.1f} ns/call   ratio {offer_ns / base_ns:5.2f}x baseline")
    print(f"   OutcomeBus.offer, no sink   {bus_off_ns:8.1f} ns/call")
    print(f"   OutcomeBus.offer, metering  {bus_on_ns:8.1f} ns/call   +{bus_on_ns - bus_off_ns:.1f} ns with metering on")


async def end_offsets(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        return sum(ends.values())
    finally:
        await consumer.stop()


async def bench_throughput(n: int, tmp: str, compression: str) -> float:
    items = outcomes(n)
    with TansuBroker() as broker:
        topic = f"bench.{compression}"
        sink = MeteringSink(settings(broker.bootstrap, tmp, topic=topic, compression=compression), ORIGIN)
        await sink.start()
        while not sink.readiness()[1].startswith("publishing"):
            await asyncio.sleep(0.01)
        start = time.perf_counter()
        # Offer in steps as requests would arrive, yielding to the loop in between.
        for i in range(0, n, 500):
            for o in items[i : i + 500]:
                sink.offer(o)
            await asyncio.sleep(0)
        offered_s = time.perf_counter() - start
        while sink.stats.sent < n:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - start
        stats = sink.stats
        await sink.stop()
        on_broker = await end_offsets(broker.bootstrap, topic)
    rate = n / elapsed
    print(f"2. sustained publish, compression={compression}: {n} events acknowledged in {elapsed:.2f}s "
          f"= {rate:,.0f} events/s (target 20,000; ratio {rate / 20_000:.2f}x)")
    print(f"   offered in {offered_s:.2f}s; {on_broker} records on the broker; "
          f"spooled {stats.spooled} (overflow {stats.overflowed}), dropped {stats.dropped}")
    return rate


async def bench_outage(n: int, tmp: str) -> None:
    items = outcomes(n)
    dead = f"127.0.0.1:{free_port()}"
    queue_max = 100_000
    sink = MeteringSink(settings(dead, tmp, queue_max=queue_max, send_timeout_s=0.5), ORIGIN)
    await sink.start()
    gc.collect()
    rss0 = rss_mib()
    max_depth = 0
    start = time.perf_counter()
    for i in range(0, n, 1000):
        for o in items[i : i + 1000]:
            sink.offer(o)
        max_depth = max(max_depth, sink.queue_depth)
        await asyncio.sleep(0)
    while sink.queue_depth:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    gc.collect()
    rss1 = rss_mib()
    spool_mib = sink.spool.size_bytes / (1 << 20)
    on_disk = sum(p.stat().st_size for p in Path(tmp).glob("seg-*.spool")) / (1 << 20)
    stats = sink.stats
    await sink.stop()
    print(f"3. broker down: {n} events in {elapsed:.2f}s ({n / elapsed:,.0f}/s into the spool)")
    print(f"   queue depth max {max_depth} (cap {queue_max}); RSS {rss0:.0f} -> {rss1:.0f} MiB "
          f"(+{rss1 - rss0:.0f} MiB for {n} events); spool {spool_mib:.0f} MiB ({on_disk:.0f} MiB on disk); "
          f"spooled {stats.spooled}, dropped {stats.dropped}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the outage part is noisy by design
    try:
        import uvloop

        print("(uvloop)")
    except ImportError:
        uvloop = None  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix="stoa-bench-") as tmp:
        await bench_offer(args.events, f"{tmp}/offer")
        await bench_throughput(args.events, f"{tmp}/gzip", "gzip")
        await bench_throughput(args.events, f"{tmp}/none", "none")
        await bench_outage(max(args.events, 300_000), f"{tmp}/outage")


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
