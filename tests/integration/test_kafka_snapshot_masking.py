"""The masking corpus through a real broker: what ``stoa.errors`` carries holds no spelling of a secret."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from link.settings import load_settings
from link.snapshots import SnapshotSink, SnapshotStore
from link.snapshots.publisher import SnapshotPublisher
from tests.harness.kafka import TansuBroker, TopicReader
from tests.unit.snapshots.masking_corpus import SECRET_CASES, leaks

pytestmark = pytest.mark.integration


@pytest.fixture
def broker() -> Iterator[TansuBroker]:
    with TansuBroker() as b:
        yield b


async def test_kafka_snapshots_on_the_errors_topic_hold_no_secret(broker: TansuBroker, tmp_path: Path) -> None:
    settings = load_settings(env={}, overrides={
        "snapshots.db_path": str(tmp_path / "snap.db"), "snapshots.queue_max": 10_000,
        "snapshots.publish_queue_max": 10_000, "metering.bootstrap_servers": broker.bootstrap,
        "registry.source": "none",
    })
    s = settings.snapshots
    sink = SnapshotSink(settings, SnapshotStore(s.db_path, retention_s=86_400, max_bytes=1 << 30),
                        SnapshotPublisher(settings.metering, s))
    await sink.start()
    try:
        async with TopicReader(broker.bootstrap, s.topic) as reader:
            for case in SECRET_CASES:
                sink.offer(case.exchange)
            wanted = {c.name for c in SECRET_CASES}
            assert await reader.read_until(
                lambda msgs: {json.loads(m.value)["request_id"] for m in msgs} >= wanted, within_s=60)
    finally:
        await sink.stop()
    published = {json.loads(m.value)["request_id"]: m.value.decode() for m in reader.messages}
    leaked = {c.name: leaks(published[c.name], c) for c in SECRET_CASES}
    leaked = {k: v for k, v in leaked.items() if v}
    assert not leaked, f"{len(leaked)} of {len(SECRET_CASES)} published cases leak: {list(leaked.items())[:5]}"
