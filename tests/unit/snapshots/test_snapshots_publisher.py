"""Publishing to stoa.errors: records keyed by tenant, failures counted and survived, stop bounded."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence

from link.metering.event import Record
from link.metering.publisher import PublishError
from link.metrics import REGISTRY
from link.settings import load_settings
from link.snapshots.publisher import SnapshotPublisher


class FakeKafka:
    """Stands in for link.metering.publisher.KafkaPublisher."""

    def __init__(self, fail_first: int = 0) -> None:
        self.records: list[Record] = []
        self.fail_first = fail_first
        self.calls = 0
        self.closed = False
        self.last_error = ""

    async def connect(self) -> None:
        return None

    async def publish(self, records: Sequence[Record]) -> None:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise PublishError("broker away")
        self.records.extend(records)

    async def close(self, grace_s: float = 5.0) -> None:
        self.closed = True


def _publisher(fake: FakeKafka) -> SnapshotPublisher:
    s = load_settings(env={}, overrides={"metering.bootstrap_servers": "127.0.0.1:1", "snapshots.topic": "errs"})
    pub = SnapshotPublisher(s.metering, s.snapshots)
    assert pub._kafka._topic == "errs"  # metering's broker settings, the snapshots topic
    pub._kafka = fake  # type: ignore[assignment]
    return pub


def _count(result: str) -> float:
    return REGISTRY.get_sample_value("stoa_link_snapshots_published_total", {"result": result}) or 0.0


async def _until(predicate: Callable[[], bool], within: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_snapshots_published_from_the_writer_thread_keyed_by_tenant() -> None:
    fake = FakeKafka()
    pub = _publisher(fake)
    await pub.start()
    docs = [{"snapshot_id": f"s{i}", "tenant_id": "acme" if i % 2 else ""} for i in range(6)]
    writer = threading.Thread(target=lambda: [pub.offer_threadsafe(d) for d in docs])
    writer.start()
    writer.join(5)
    assert await _until(lambda: len(fake.records) == 6)
    await pub.stop()
    assert fake.closed
    keys = [k for k, _ in fake.records]
    assert keys == [None, b"acme"] * 3
    assert [json.loads(v)["snapshot_id"] for _, v in fake.records] == [d["snapshot_id"] for d in docs]


async def test_a_broker_failure_is_counted_and_publishing_goes_on() -> None:
    fake = FakeKafka(fail_first=1)
    pub = _publisher(fake)
    failed = _count("failed")
    await pub.start()
    pub.offer_threadsafe({"snapshot_id": "lost", "tenant_id": "acme"})
    assert await _until(lambda: fake.calls == 1)
    pub.offer_threadsafe({"snapshot_id": "sent", "tenant_id": "acme"})
    assert await _until(lambda: len(fake.records) == 1, within=5)
    await pub.stop()
    assert _count("failed") - failed == 1
    assert json.loads(fake.records[0][1])["snapshot_id"] == "sent"
