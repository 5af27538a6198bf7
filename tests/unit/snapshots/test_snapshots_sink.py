"""The sink: what it wants, how it stores off the request path, and install(app)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from link.app import LinkApp
from link.metrics import REGISTRY
from link.settings import Settings, load_settings
from link.snapshots import SnapshotSink, SnapshotStore
from link.snapshots.store import SnapshotFilter
from tests.unit.snapshots.support import exchange


def _settings(tmp_path: Path, **over: Any) -> Settings:
    base = {"snapshots.db_path": str(tmp_path / "snap.db"), "registry.source": "none",
            "metering.enabled": False}
    return load_settings(env={}, overrides={**base, **over})


def _sink(settings: Settings) -> SnapshotSink:
    s = settings.snapshots
    store = SnapshotStore(s.db_path, retention_s=s.retention_days * 86_400, max_bytes=s.max_bytes)
    return SnapshotSink(settings, store)


@pytest.mark.parametrize(
    ("over", "status", "tenant", "route_opted_in", "wanted"),
    [
        ({}, 502, "acme", True, True),
        ({}, 502, "acme", False, False),  # neither the route nor the tenant opted in
        ({}, 404, "acme", True, False),  # 4xx is opt-in
        ({"snapshots.capture_4xx": True}, 404, "acme", True, True),
        ({"snapshots.capture_5xx": False}, 503, "acme", True, False),
        ({}, 200, "acme", True, False),
        ({"snapshots.tenants": "acme,globex"}, 500, "acme", False, True),
        ({"snapshots.tenants": "acme"}, 500, "other", False, False),
        ({"snapshots.tenants": "*"}, 500, "other", False, True),
    ],
)
def test_wants(tmp_path: Path, over: dict[str, Any], status: int, tenant: str, route_opted_in: bool,
               wanted: bool) -> None:
    assert _sink(_settings(tmp_path, **over)).wants(status, tenant, route_opted_in) is wanted


async def _until(predicate: Any, within: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return bool(predicate())


async def test_offered_exchanges_are_stored_masked(tmp_path: Path) -> None:
    sink = _sink(_settings(tmp_path))
    await sink.start()
    try:
        offered = [exchange() for _ in range(5)]
        for ex in offered:
            sink.offer(ex)
        assert await _until(lambda: sink.store.count() == 5)
        rows = sink.store.list(SnapshotFilter(limit=10))
        docs = [sink.store.get(r.id) for r in rows]
        assert {d["request_id"] for d in docs if d} == {ex.request_id for ex in offered}
        d = docs[0]
        assert d is not None
        assert d["request"]["headers"]["authorization"] == "[REDACTED]"
        assert d["request"]["body"] == '{"email":"[email]"}'
        assert d["pii_found"] is True and "email" in d["pii_kinds"]
        assert d["response_status"] == 502 and d["tenant_id"] == "acme"
        assert d["timing"] == {"identity": 0.1, "upstream": 12.0}
    finally:
        await sink.stop()
    raw = _disk_bytes(tmp_path)
    assert b"a@b.io" not in raw and b"zzzzzzzz" not in raw


async def test_offer_never_blocks_and_drops_when_full(tmp_path: Path) -> None:
    sink = _sink(_settings(tmp_path, **{"snapshots.queue_max": 2}))
    release = threading.Event()
    real_put = sink.store.put_many

    def slow_put(docs: Any) -> tuple[int, int]:
        release.wait(10)  # a disk that hangs
        return real_put(docs)

    sink.store.put_many = slow_put  # type: ignore[method-assign]
    dropped = _dropped()
    await sink.start()
    try:
        sink.offer(exchange())
        assert await _until(lambda: sink._queue.qsize() == 0)  # the writer holds it, stuck on the disk
        for _ in range(10):
            sink.offer(exchange())  # returns at once although nothing drains
        assert _dropped() - dropped == 8
    finally:
        release.set()
        await sink.stop()
    reopened = SnapshotStore(tmp_path / "snap.db", retention_s=86_400, max_bytes=1 << 24)
    reopened.open()
    assert reopened.count() == 3
    reopened.close()


def _disk_bytes(d: Path) -> bytes:
    return b"".join(p.read_bytes() for p in d.iterdir() if p.is_file())


def _dropped() -> float:
    return REGISTRY.get_sample_value("stoa_link_snapshots_dropped_total", {"reason": "queue_full"}) or 0.0


async def test_stop_flushes_what_was_queued(tmp_path: Path) -> None:
    sink = _sink(_settings(tmp_path))
    await sink.start()
    for _ in range(20):
        sink.offer(exchange())
    await sink.stop()
    store = SnapshotStore(tmp_path / "snap.db", retention_s=86_400, max_bytes=1 << 24)
    store.open()
    assert store.count() == 20
    store.close()


async def test_install_wires_sink_component_and_admin_routes(tmp_path: Path) -> None:
    app = LinkApp(_settings(tmp_path, **{"snapshots.admin_token": "t"}), plugins=("link.snapshots",))
    assert isinstance(app.exchange_sink, SnapshotSink)
    assert app.exchange_sink in app.components
    paths = {r.path for r in app.admin_routes}
    assert paths == {"/admin/snapshots", "/admin/snapshots/{snapshot_id}"}
    off = LinkApp(_settings(tmp_path, **{"snapshots.enabled": False}), plugins=("link.snapshots",))
    assert off.exchange_sink is None and off.admin_routes == []


def test_capture_rate_is_bounded(tmp_path: Path) -> None:
    sink = _sink(_settings(tmp_path, **{"snapshots.max_per_second": "5"}))
    before = REGISTRY.get_sample_value("stoa_link_snapshots_dropped_total", {"reason": "rate_limited"}) or 0.0
    wanted = sum(sink.wants(503, "acme", True) for _ in range(100))  # an error storm, within a blink
    assert 5 <= wanted <= 6  # the burst, plus what refilled meanwhile
    after = REGISTRY.get_sample_value("stoa_link_snapshots_dropped_total", {"reason": "rate_limited"}) or 0.0
    assert after - before == 100 - wanted
    assert not sink.wants(200, "acme", True)  # not an error: not counted as rate-limited
    assert (REGISTRY.get_sample_value("stoa_link_snapshots_dropped_total", {"reason": "rate_limited"}) or 0) == after


async def test_an_unusable_db_path_disables_snapshots_without_failing_start(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    settings = _settings(tmp_path, **{"snapshots.db_path": str(blocker / "snap.db"), "snapshots.admin_token": "t"})
    app = LinkApp(settings, plugins=("link.snapshots",))
    await app.start()
    try:
        sink = app.exchange_sink
        assert isinstance(sink, SnapshotSink)
        ok, detail = sink.readiness()
        assert ok and "cannot open" in detail
        sink.offer(exchange())  # dropped, not raised
        with TestClient(Starlette(routes=app.admin_routes)) as client:
            r = client.get("/admin/snapshots", headers={"authorization": "Bearer t"})
            assert r.status_code == 503 and r.json()["error"].startswith("snapshot store unavailable")
    finally:
        await app.stop()


async def test_snapshots_carry_the_gateway_id_the_control_plane_assigned(tmp_path: Path) -> None:
    app = LinkApp(_settings(tmp_path, **{"controlplane.instance_name": "pod-7"}), plugins=("link.snapshots",))
    sink = app.exchange_sink
    assert isinstance(sink, SnapshotSink)
    await sink.start()
    try:
        sink.offer(exchange())
        assert await _until(lambda: sink.store.count() == 1)
        app.set_gateway_id("gw-42")  # what ControlPlaneClient calls once registered
        sink.offer(exchange())
        assert await _until(lambda: sink.store.count() == 2)
        docs = [sink.store.get(r.id) for r in sink.store.list(SnapshotFilter(limit=10))]
        ids = sorted((d["gateway_id"], d["instance"]) for d in docs if d)
    finally:
        await sink.stop()
    assert ids == [("gw-42", "pod-7"), ("pod-7", "pod-7")]
