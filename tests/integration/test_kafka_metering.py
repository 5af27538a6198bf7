"""Metering against a real Kafka-protocol broker (tansu): fields and keys, outages, a killed sink.

tansu keeps its data in memory, so a stopped broker forgets what it held; where
a test stops it, the reader first takes everything the broker acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from link.app import LinkApp
from link.events import RequestOutcome
from link.metering import EventOrigin, MeteringSink
from link.model import Outcome
from link.settings import MeteringSettings, load_settings
from stoa_proto import MeteringEvent
from tests.harness.kafka import TansuBroker, TopicReader
from tests.harness.procs import ManagedProcess, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "stoa.metering"


@pytest.fixture
def broker() -> Any:
    with TansuBroker() as b:
        yield b


def _settings(bootstrap: str, spool_dir: Path, **kw: Any) -> MeteringSettings:
    base: dict[str, Any] = dict(
        bootstrap_servers=bootstrap, spool_dir=str(spool_dir), send_timeout_s=1.0, linger_ms=5,
        batch_max=200,
    )
    base.update(kw)
    return MeteringSettings(**base)


def _outcome(i: int, prefix: str = "r") -> RequestOutcome:
    tenant = ("acme", "globex", "")[i % 3]
    return RequestOutcome(
        request_id=f"{prefix}{i:06d}", timestamp=time.time(), method="POST" if i % 2 else "GET",
        path=f"/invoices/{i}", http_status=(200, 429, 403)[i % 3],
        outcome=(Outcome.SUCCESS, Outcome.RATE_LIMITED, Outcome.POLICY_DENIED)[i % 3],
        tenant=tenant, consumer=f"app-{i % 5}", subject=f"user-{i % 7}", route="invoices",
        route_template="/invoices/{id}", api="billing", scopes=["read"], roles=["viewer"],
        latency_ms=3.5, t_gateway_ms=0.5, t_backend_ms=3.0, request_size_bytes=10 + i,
        response_size_bytes=20 + i, trace_id=f"{i:032x}",
    )


def _request_ids(messages: list[Any]) -> set[str]:
    return {json.loads(m.value)["request_id"] for m in messages}


def _event_ids(messages: list[Any]) -> set[str]:
    return {json.loads(m.value)["event_id"] for m in messages}


async def _until(predicate: Callable[[], bool], within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class Traffic:
    """Steady traffic: one finished request offered every ``interval_s`` until stopped."""

    def __init__(self, sink: Any, interval_s: float = 0.002) -> None:
        self.sink = sink
        self.interval_s = interval_s
        self.offered: list[str] = []
        self.paused = False
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        i = 0
        while True:
            if not self.paused:
                outcome = _outcome(i)
                self.sink.offer(outcome)
                self.offered.append(outcome.request_id)
                i += 1
            await asyncio.sleep(self.interval_s)

    async def __aenter__(self) -> Traffic:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


@pytest.fixture
async def sink(broker: TansuBroker, tmp_path: Path) -> AsyncIterator[MeteringSink]:
    s = MeteringSink(_settings(broker.bootstrap, tmp_path / "spool"), EventOrigin("gw-1", "pod-1", "sidecar"))
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.mark.parametrize("fmt", ["json", "protobuf"])
async def test_kafka_events_arrive_with_their_fields_and_the_tenant_as_key(
    broker: TansuBroker, tmp_path: Path, fmt: str
) -> None:
    """Through the app's outcome bus, as the data plane offers them."""
    settings = load_settings(
        env={"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "METERING_ENABLED": "true", "POD_NAME": "pod-9"},
        overrides={"metering.spool_dir": str(tmp_path / "spool"), "metering.format": fmt,
                   "metering.linger_ms": 5, "policy.enabled": False, "registry.source": "none"},
    )
    app = LinkApp(settings, plugins=("link.metering",))
    await app.start()
    try:
        sent = [_outcome(i) for i in range(300)]
        for outcome in sent:
            app.bus.offer(outcome)
        async with TopicReader(broker.bootstrap, TOPIC) as reader:
            assert await reader.read_until(lambda m: len(m) >= 300, within_s=20)
            await reader.poll(300)  # anything beyond 300 would be a duplicate
    finally:
        await app.stop()

    assert len(reader.messages) == 300
    by_request = {o.request_id: o for o in sent}
    event_ids = set()
    for message in reader.messages:
        if fmt == "json":
            event = json.loads(message.value)
        else:
            from google.protobuf import json_format

            event = json_format.MessageToDict(
                MeteringEvent.FromString(message.value), preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            )
        o = by_request[event["request_id"]]
        assert message.key == (o.tenant.encode() if o.tenant else None)
        assert event["tenant_id"] == o.tenant and event["consumer_id"] == o.consumer
        assert event["user_id"] == o.subject and event["api"] == "billing"
        assert event["route"] == "/invoices/{id}" and event["method"] == o.method
        assert event["http_status"] == o.http_status and event["status"] == o.outcome.value
        assert int(event["request_size_bytes"]) == o.request_size_bytes
        assert event["trace_id"] == o.trace_id and event["scopes"] == ["read"] and event["roles"] == ["viewer"]
        assert event["gateway_id"] == "pod-9" and event["instance"] == "pod-9" and event["mode"] == "sidecar"
        assert event["timestamp"].endswith("Z") and float(event["latency_ms"]) == 3.5
        event_ids.add(event["event_id"])
    assert len(event_ids) == 300


async def test_kafka_broker_stopped_and_restarted_under_steady_traffic_loses_nothing(
    broker: TansuBroker, sink: MeteringSink
) -> None:
    async with Traffic(sink) as traffic:
        await _until(lambda: len(traffic.offered) >= 200)
        # tansu forgets everything when it stops: take what it acknowledged before stopping it.
        traffic.paused = True
        before = list(traffic.offered)
        async with TopicReader(broker.bootstrap, TOPIC) as first:
            assert await first.read_until(lambda m: _request_ids(m) >= set(before), within_s=20)
        broker.stop()
        traffic.paused = False

        spooled = sink.stats.spooled
        await _until(lambda: sink.stats.spooled > spooled + 200)  # the outage, under traffic
        assert "spooling" in sink.readiness()[1]
        broker.start()  # same port, empty
        mark = len(traffic.offered)
        await _until(lambda: len(traffic.offered) >= mark + 200)  # traffic goes on after the restart
    offered = set(traffic.offered)
    after = offered - set(before)

    async with TopicReader(broker.bootstrap, TOPIC) as second:
        assert await second.read_until(lambda m: _request_ids(m) >= after, within_s=30)
        await second.poll(300)
    received = first.messages + second.messages
    assert _request_ids(received) == offered
    # One event per request: duplicates (at least once) share their event_id.
    assert len(_event_ids(received)) == len(offered)
    assert sink.stats.replayed > 0 and sink.stats.dropped == 0


async def test_kafka_broker_that_stops_answering_then_recovers_loses_nothing(
    broker: TansuBroker, sink: MeteringSink
) -> None:
    """A frozen broker (SIGSTOP): sends time out mid-flight; the spool covers them."""
    async with TopicReader(broker.bootstrap, TOPIC) as reader, Traffic(sink) as traffic:
        await _until(lambda: sink.stats.sent >= 200)
        broker.pause()
        failed = sink.stats.failed
        await _until(lambda: sink.stats.failed > failed and sink.spool.has_pending())
        mark = len(traffic.offered)
        await _until(lambda: len(traffic.offered) >= mark + 300)
        broker.resume()
        mark = len(traffic.offered)
        await _until(lambda: len(traffic.offered) >= mark + 200)
        await traffic.stop()
        offered = set(traffic.offered)
        assert await reader.read_until(lambda m: _request_ids(m) >= offered, within_s=30)
    assert _request_ids(reader.messages) == offered
    assert len(_event_ids(reader.messages)) == len(offered)


_CHILD = r"""
import asyncio, sys, time
from link.events import RequestOutcome
from link.metering import EventOrigin, MeteringSink
from link.model import Outcome
from link.settings import MeteringSettings

async def main(bootstrap, spool_dir, n):
    settings = MeteringSettings(bootstrap_servers=bootstrap, spool_dir=spool_dir, spool_fsync="always",
                                send_timeout_s=1.0)
    sink = MeteringSink(settings, EventOrigin("gw-1", "child", "sidecar"))
    await sink.start()
    for i in range(n):
        sink.offer(RequestOutcome(request_id=f"k{i:06d}", timestamp=time.time(), method="GET",
                                  path="/x", http_status=200, outcome=Outcome.SUCCESS, tenant="acme"))
    while sink.stats.spooled < n:
        await asyncio.sleep(0.01)
    await asyncio.to_thread(sink.spool.sync)
    print("SPOOLED", sink.stats.spooled, flush=True)
    await asyncio.sleep(3600)  # killed long before

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_kafka_events_spooled_by_a_killed_sink_arrive_after_restart(tmp_path: Path) -> None:
    n = 1_500
    spool_dir = tmp_path / "spool"
    broker = TansuBroker()  # its port is chosen, nothing listens yet: the child has to spool
    child = ManagedProcess(
        [sys.executable, "-c", _CHILD, broker.bootstrap, str(spool_dir), str(n)],
        log_path=tmp_path / "child.log", env={"PYTHONPATH": str(ROOT)}, cwd=str(ROOT),
    )
    try:
        assert wait_until(lambda: "SPOOLED" in child.log_text() or not child.alive(), timeout=30), "child hung"
        assert f"SPOOLED {n}" in child.log_text(), child.log_text()
    finally:
        child.kill()  # SIGKILL: no stop(), no flush, no close
    assert list(spool_dir.glob("seg-*.spool"))

    with broker:
        restarted = MeteringSink(_settings(broker.bootstrap, spool_dir), EventOrigin("gw-1", "pod-1", "sidecar"))
        await restarted.start()
        try:
            expected = {f"k{i:06d}" for i in range(n)}
            async with TopicReader(broker.bootstrap, TOPIC) as reader:
                assert await reader.read_until(lambda m: _request_ids(m) >= expected, within_s=30)
            await _until(lambda: not restarted.spool.has_pending())
        finally:
            await restarted.stop()
    assert _request_ids(reader.messages) == expected
    assert len(_event_ids(reader.messages)) == n  # events keep the id they were spooled with
    assert restarted.stats.replayed >= n


_LOADED_CHILD = r"""
import asyncio, random, sys, time
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2
from link.events import OutcomeBus
from link.grpc.accesslog import AccessLogService
from link.metering import EventOrigin, MeteringSink
from link.settings import MeteringSettings

def message(run, first, count):
    msg = als_pb2.StreamAccessLogsMessage()
    for i in range(first, first + count):
        entry = msg.http_logs.log_entry.add()
        entry.request.request_id = f"{run}-{i:07d}"
        entry.request.path = "/orders/1"
        entry.request.request_method = 1  # GET
        entry.response.response_code.value = 200
        entry.common_properties.start_time.seconds = int(time.time())
    return msg

async def main(bootstrap, spool_dir, run):
    # The defaults that matter here: spool_fsync "interval" (no fsync per write) and a linger.
    settings = MeteringSettings(bootstrap_servers=bootstrap, spool_dir=spool_dir, send_timeout_s=2.0)
    sink = MeteringSink(settings, EventOrigin("gw-1", "child", "sidecar"))
    bus = OutcomeBus()
    bus.add(sink)
    await sink.start()

    async def stream():
        # Envoy's side of the access-log stream. When the handler asks for the next message it has
        # handled the previous one: that is the point a message counts as accepted by Link.
        i = 0
        while i < 200_000:  # bounded; killed long before
            n = random.randint(1, 40)
            yield message(run, i, n)
            i += n
            sys.stdout.write(f"ACCEPTED {i}\n")
            sys.stdout.flush()
            await asyncio.sleep(0.001)

    await AccessLogService(bus).StreamAccessLogs(stream(), None)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
"""


def _accepted(log: str) -> int:
    lines = [ln for ln in log.splitlines() if ln.startswith("ACCEPTED ")]
    return int(lines[-1].split()[1]) if lines else 0


@pytest.mark.parametrize("run", range(3))
async def test_kafka_sigkill_of_link_under_load_loses_no_accepted_event(
    broker: TansuBroker, tmp_path: Path, run: int
) -> None:
    import random

    spool_dir = tmp_path / "spool"
    kill_after = random.randint(2_000, 8_000)  # a random point under load, different each run
    child = ManagedProcess(
        [sys.executable, "-c", _LOADED_CHILD, broker.bootstrap, str(spool_dir), f"run{run}"],
        log_path=tmp_path / "child.log", env={"PYTHONPATH": str(ROOT)}, cwd=str(ROOT),
    )
    try:
        assert wait_until(lambda: _accepted(child.log_text()) >= kill_after or not child.alive(), timeout=60)
        assert child.alive(), child.log_text()[-2000:]
    finally:
        child.kill()  # SIGKILL: no stop(), no flush, no close, events in memory and in flight
    n = _accepted(child.log_text())  # read after the kill: the last commit the child reported
    assert n >= kill_after

    restarted = MeteringSink(_settings(broker.bootstrap, spool_dir), EventOrigin("gw-1", "pod-1", "sidecar"))
    await restarted.start()
    try:
        expected = {f"run{run}-{i:07d}" for i in range(n)}
        async with TopicReader(broker.bootstrap, TOPIC) as reader:
            assert await reader.read_until(lambda m: _request_ids(m) >= expected, within_s=60)
            await _until(lambda: not restarted.spool.has_pending(), within_s=30)
            await reader.poll()
    finally:
        await restarted.stop()
    events = [json.loads(m.value) for m in reader.messages]
    mine = [e for e in events if e["request_id"] in expected]
    # Every accepted event arrived; duplicates (sent before the kill, replayed after) share an event_id.
    assert len({e["event_id"] for e in mine}) == n
    assert {e["request_id"] for e in mine} == expected
    ids_per_request: dict[str, set[str]] = {}
    for e in events:
        ids_per_request.setdefault(e["request_id"], set()).add(e["event_id"])
    assert all(len(ids) == 1 for ids in ids_per_request.values())


def _kafka_sender_tasks() -> list[asyncio.Task[Any]]:
    return [
        t for t in asyncio.all_tasks()
        if not t.done() and "_sender_routine" in getattr(t.get_coro(), "__qualname__", "")
    ]


async def test_kafka_a_failed_producer_is_abandoned_not_left_retrying(broker: TansuBroker, sink: MeteringSink) -> None:
    """Each failed send drops its producer; none may live on retrying its batches.

    A producer left retrying delivers late copies next to the replay once the broker is back,
    and over a long outage one such task piles up per reconnect attempt.
    """
    async with Traffic(sink) as traffic:
        await _until(lambda: sink.stats.sent >= 100)
        broker.pause()  # sends time out mid-flight: the worst case for a producer's pending batches
        failed = sink.stats.failed
        await _until(lambda: sink.stats.failed > failed)
        await asyncio.sleep(3.0)  # several reconnect attempts, each with a producer of its own
        traffic.paused = True
        broker.resume()
        await _until(lambda: not sink.spool.has_pending() and sink.stats.sent >= len(traffic.offered), 30)
    await asyncio.sleep(1.5)  # a discarded producer's stop is bounded at one second
    assert len(_kafka_sender_tasks()) <= 1  # the producer in use, nothing else
