"""MeteringSink against a fake broker: direct sends, spooling, replay in order, overflow, the cap."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from link.events import RequestOutcome
from link.metering import MeteringSink, install
from link.metering.event import EventOrigin, Record
from link.metering.publisher import PublishError
from link.metrics import REGISTRY
from link.model import Outcome
from link.settings import ConfigError, MeteringSettings, load_settings

ORIGIN = EventOrigin(gateway_id="gw", instance="test", mode="sidecar")


class FakeBroker:
    """Stands in for KafkaPublisher; ``up`` decides whether batches are acknowledged."""

    def __init__(self, up: bool = True, delay_s: float = 0.0) -> None:
        self.up = up
        self.delay_s = delay_s
        self.received: list[Record] = []
        self.last_error = ""
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        if not self.up:
            self.last_error = "connection refused"
            raise PublishError(self.last_error)
        self._connected = True

    async def publish(self, records: Sequence[Record]) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if not self.up or not self._connected:
            self._connected = False
            self.last_error = "broker down"
            raise PublishError(self.last_error)
        self.received.extend(records)

    async def close(self, grace_s: float = 5.0) -> None:
        self._connected = False

    def request_ids(self) -> list[str]:
        return [json.loads(v)["request_id"] for _, v in self.received]


def _settings(tmp_path: Path, **kw: Any) -> MeteringSettings:
    base: dict[str, Any] = dict(
        bootstrap_servers="127.0.0.1:1", spool_dir=str(tmp_path / "spool"), batch_max=50,
        linger_ms=0, send_timeout_s=1.0, spool_fsync="interval", spool_fsync_interval_ms=20,
    )
    base.update(kw)
    return MeteringSettings(**base)


def _outcome(i: int, tenant: str = "acme") -> RequestOutcome:
    return RequestOutcome(
        request_id=f"r{i:06d}", timestamp=time.time(), method="GET", path=f"/items/{i}",
        http_status=200, outcome=Outcome.SUCCESS, tenant=tenant, route_template="/items/{id}",
    )


async def _until(predicate: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _metric(name: str, labels: dict[str, str] | None = None) -> float:
    value = REGISTRY.get_sample_value(name, labels or {})
    return value or 0.0


async def test_healthy_broker_gets_every_event_directly_with_tenant_keys(tmp_path: Path) -> None:
    broker = FakeBroker()
    sink = MeteringSink(_settings(tmp_path), ORIGIN, publisher=broker)
    sent_before = _metric("stoa_link_metering_events_sent_total", {"path": "direct"})
    await sink.start()
    await _until(lambda: broker.connected)
    for i in range(500):
        sink.offer(_outcome(i, tenant=f"t{i % 3}"))
    await _until(lambda: len(broker.received) == 500)
    await sink.stop()
    assert sorted(broker.request_ids()) == [f"r{i:06d}" for i in range(500)]
    assert {k for k, _ in broker.received} == {b"t0", b"t1", b"t2"}
    assert sink.stats.spooled == 0 and sink.stats.dropped == 0
    assert _metric("stoa_link_metering_events_sent_total", {"path": "direct"}) - sent_before == 500


async def test_broker_outage_spools_then_replays_everything_in_order(tmp_path: Path) -> None:
    broker = FakeBroker()
    sink = MeteringSink(_settings(tmp_path), ORIGIN, publisher=broker)
    await sink.start()
    await _until(lambda: broker.connected)
    for i in range(100):
        sink.offer(_outcome(i))
    await _until(lambda: len(broker.received) == 100)

    broker.up = False
    for i in range(100, 400):
        sink.offer(_outcome(i))
        if i % 50 == 0:
            await asyncio.sleep(0.01)  # steady traffic
    await _until(lambda: sink.stats.spooled >= 300)
    assert sink.spool.pending_bytes() > 0
    await _until(lambda: _metric("stoa_link_metering_spool_bytes") >= sink.spool.pending_bytes())
    ok, detail = sink.readiness()
    assert ok and "spooling" in detail  # an outage must not fail readiness

    broker.up = True
    for i in range(400, 450):
        sink.offer(_outcome(i))
    await _until(lambda: len(set(broker.request_ids())) == 450)
    await _until(lambda: not sink.spool.has_pending())
    ids = broker.request_ids()
    # Nothing lost; events sent after the outage began come in the order they were offered.
    assert set(ids) == {f"r{i:06d}" for i in range(450)}
    after = [x for x in ids if x >= "r000100"]
    assert after == sorted(after)
    await _until(lambda: sink.readiness()[1].startswith("publishing"))
    await sink.stop()


async def test_a_full_queue_spills_to_the_spool_instead_of_dropping(tmp_path: Path) -> None:
    broker = FakeBroker()
    sink = MeteringSink(_settings(tmp_path, queue_max=100), ORIGIN, publisher=broker)
    overflow_before = _metric("stoa_link_metering_events_spooled_total", {"reason": "overflow"})
    await sink.start()
    for i in range(1_000):  # no await: the sender cannot run, so the queue fills up
        sink.offer(_outcome(i))
    assert sink.queue_depth == 100
    assert sink.stats.overflowed == 900
    assert _metric("stoa_link_metering_events_spooled_total", {"reason": "overflow"}) - overflow_before == 900
    await _until(lambda: len(set(broker.request_ids())) == 1_000)
    assert sink.stats.dropped == 0
    await sink.stop()


async def test_the_spool_cap_refuses_newest_counts_and_logs_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = FakeBroker(up=False)
    sink = MeteringSink(_settings(tmp_path, spool_max_bytes=1 << 16), ORIGIN, publisher=broker)
    dropped_before = _metric("stoa_link_metering_events_dropped_total", {"reason": "spool_full"})
    await sink.start()
    with caplog.at_level(logging.ERROR, logger="stoa.link.metering"):
        for i in range(1_000):
            sink.offer(_outcome(i))
            if i % 100 == 0:
                await asyncio.sleep(0.02)
        await _until(lambda: sink.queue_depth == 0 and sink.stats.spooled + sink.stats.dropped == 1_000)
    assert sink.stats.dropped > 0
    assert sink.spool.size_bytes <= 1 << 16
    assert "METERING SPOOL FULL" in caplog.text
    assert _metric("stoa_link_metering_events_dropped_total", {"reason": "spool_full"}) - dropped_before == (
        sink.stats.dropped
    )
    await _until(lambda: _metric("stoa_link_metering_spool_full") == 1)
    assert "spool full" in sink.readiness()[1]

    # The broker comes back: what was spooled (the oldest events) arrives, in order.
    broker.up = True
    await _until(lambda: not sink.spool.has_pending())
    ids = broker.request_ids()
    assert len(ids) == sink.stats.spooled
    assert ids == [f"r{i:06d}" for i in range(len(ids))]
    await sink.stop()


async def test_stop_with_the_broker_down_keeps_events_for_the_next_run(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    down = FakeBroker(up=False)
    first = MeteringSink(settings, ORIGIN, publisher=down)
    await first.start()
    for i in range(250):
        first.offer(_outcome(i))
    await first.stop()  # nothing reached a broker
    assert down.received == []
    first.offer(_outcome(999))  # after stop: counted, not silently lost
    assert first.stats.dropped == 1

    up = FakeBroker()
    second = MeteringSink(settings, ORIGIN, publisher=up)
    await second.start()
    await _until(lambda: len(up.received) == 250)
    assert up.request_ids() == [f"r{i:06d}" for i in range(250)]
    await second.stop()


async def test_stop_publishes_what_is_queued_when_the_broker_is_up(tmp_path: Path) -> None:
    broker = FakeBroker()
    sink = MeteringSink(_settings(tmp_path), ORIGIN, publisher=broker)
    await sink.start()
    await _until(lambda: broker.connected)
    for i in range(300):
        sink.offer(_outcome(i))
    await sink.stop()
    assert len(set(broker.request_ids())) == 300
    assert not list((tmp_path / "spool").glob("seg-*.spool")) or sink.spool.pending_bytes() == 0


async def test_a_slow_broker_is_treated_like_an_absent_one(tmp_path: Path) -> None:
    """Acks slower than send_timeout_s: the batch is spooled and retried (at least once)."""

    class SlowBroker(FakeBroker):
        async def publish(self, records: Sequence[Record]) -> None:
            if self.delay_s:
                try:
                    await asyncio.wait_for(asyncio.sleep(self.delay_s), timeout=0.2)
                except TimeoutError:
                    self._connected = False
                    raise PublishError("timed out") from None
            await super().publish(records)

    broker = SlowBroker(delay_s=5.0)
    sink = MeteringSink(_settings(tmp_path), ORIGIN, publisher=broker)
    await sink.start()
    for i in range(20):
        sink.offer(_outcome(i))
    await _until(lambda: sink.stats.failed > 0 and sink.spool.has_pending())
    broker.delay_s = 0.0
    await _until(lambda: set(broker.request_ids()) == {f"r{i:06d}" for i in range(20)})
    await sink.stop()


def test_install_adds_the_sink_only_when_enabled_with_a_broker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class App:
        def __init__(self, settings: Any) -> None:
            self.settings = settings
            self.sinks: list[Any] = []
            self.components: list[Any] = []
            self.extras: dict[str, Any] = {}

        def add_outcome_sink(self, sink: Any) -> None:
            self.sinks.append(sink)

        def add_component(self, c: Any) -> None:
            self.components.append(c)

        def on_gateway_id(self, listener: Any) -> None:
            self.listeners = [listener]

    spool = str(tmp_path / "s")
    on = App(load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "POD_NAME": "pod-1"},
                           overrides={"metering.spool_dir": spool}))
    install(on)  # type: ignore[arg-type]
    assert on.sinks == on.components and isinstance(on.sinks[0], MeteringSink)
    assert on.extras["metering"] is on.sinks[0]
    assert on.listeners == [on.sinks[0].set_gateway_id]  # events follow the control plane's gateway id

    off = App(load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "METERING_ENABLED": "false"}))
    install(off)  # type: ignore[arg-type]
    assert off.sinks == [] and off.components == []

    with caplog.at_level(logging.WARNING, logger="stoa.link.metering"):
        nowhere = App(load_settings(env={}))
        install(nowhere)  # type: ignore[arg-type]
    assert nowhere.sinks == [] and "no broker" in caplog.text


def test_install_names_the_key_when_a_codec_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiokafka import codec

    monkeypatch.setattr(codec, "has_zstd", lambda: False)  # as on a machine without cramjam
    settings = load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"},
                             overrides={"metering.compression": "zstd", "metering.spool_dir": str(tmp_path)})

    class App:
        def __init__(self) -> None:
            self.settings = settings

    with pytest.raises(ConfigError) as err:
        install(App())  # type: ignore[arg-type]
    assert err.value.key == "metering.compression"


async def test_offer_before_start_is_queued_and_sent_once_started(tmp_path: Path) -> None:
    broker = FakeBroker()
    sink = MeteringSink(_settings(tmp_path), ORIGIN, publisher=broker)
    assert sink.readiness() == (False, "not started")
    for i in range(10):
        sink.offer(_outcome(i))
    await sink.start()
    await _until(lambda: len(broker.received) == 10)
    await sink.stop()


async def test_an_event_that_cannot_be_encoded_is_counted_and_the_rest_flow(tmp_path: Path) -> None:
    broker = FakeBroker()
    sink = MeteringSink(_settings(tmp_path), ORIGIN, publisher=broker)
    dropped_before = _metric("stoa_link_metering_events_dropped_total", {"reason": "encode_error"})
    await sink.start()
    await _until(lambda: broker.connected)
    sink.offer(_outcome(0))
    sink.offer(_outcome(1, tenant="x" * 10_000))  # no broker would take it
    sink.offer(_outcome(2))
    await _until(lambda: len(broker.received) == 2)
    await sink.stop()
    assert broker.request_ids() == ["r000000", "r000002"]
    assert sink.stats.dropped == 1
    assert _metric("stoa_link_metering_events_dropped_total", {"reason": "encode_error"}) - dropped_before == 1


async def test_events_offered_while_the_sender_waits_are_written_ahead(tmp_path: Path) -> None:
    class SlowToConnect(FakeBroker):
        def __init__(self) -> None:
            super().__init__()
            self.release = asyncio.Event()

        async def connect(self) -> None:
            await self.release.wait()
            await super().connect()

    broker = SlowToConnect()
    sink = MeteringSink(_settings(tmp_path), ORIGIN, publisher=broker)
    await sink.start()
    await asyncio.sleep(0.05)  # the sender is now waiting in connect()
    for i in range(57):
        sink.offer(_outcome(i))
    # Not held in memory until the broker answers: the committer writes them to the spool.
    await _until(lambda: sink.queue_depth == 0 and sink.spool.has_pending())
    await _until(lambda: _metric("stoa_link_metering_queue_depth") == 0
                 and _metric("stoa_link_metering_spool_bytes") > 0)
    assert sink.readiness() == (True, "connecting to the broker")
    broker.release.set()
    await _until(lambda: len(broker.received) == 57)
    await _until(lambda: not sink.spool.has_pending())
    await sink.stop()
