"""The SQLite store: retention purge, size cap, filters, delete."""

from __future__ import annotations

from pathlib import Path

import pytest

from link.settings import ConfigError, load_settings
from link.snapshots.store import SnapshotFilter, SnapshotStore
from tests.unit.snapshots.support import doc


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _store(tmp_path: Path, clock: Clock, max_bytes: int = 1 << 24,
           retention_s: float = 7 * 86_400) -> SnapshotStore:
    store = SnapshotStore(tmp_path / "snap.db", retention_s=retention_s, max_bytes=max_bytes, clock=clock)
    store.open()
    return store


def test_snapshots_past_retention_are_purged(tmp_path: Path) -> None:
    clock = Clock()
    store = _store(tmp_path, clock, retention_s=7 * 86_400)
    old = [doc() for _ in range(3)]
    store.put_many(old)
    clock.t += 6 * 86_400
    young = [doc() for _ in range(2)]
    store.put_many(young)
    assert store.purge_expired() == 0
    clock.t += 1 * 86_400 + 1  # the first three are now 7 days + 1 s old
    assert store.purge_expired() == 3
    assert {s.id for s in store.list()} == {d["snapshot_id"] for d in young}
    assert all(store.get(d["snapshot_id"]) is None for d in old)
    clock.t += 6 * 86_400  # the young ones: 7 days + 1 s old too
    assert store.purge_expired() == 2
    assert store.count() == 0
    assert store.stored_bytes == 0


def test_size_cap_holds_and_keeps_the_newest(tmp_path: Path) -> None:
    clock = Clock()
    cap = 64 << 10
    store = _store(tmp_path, clock, max_bytes=cap)
    ids = []
    for _ in range(200):  # ~10x the cap, one at a time like the writer under steady errors
        clock.t += 1
        d = doc(pad=3_000)
        ids.append(d["snapshot_id"])
        store.put_many([d])
        assert store.stored_bytes <= cap
    kept = [s.id for s in store.list(SnapshotFilter(limit=500))]
    assert 0 < len(kept) < 200
    assert kept == list(reversed(ids))[: len(kept)]  # newest first, nothing newer missing
    # Disk use follows the cap (freed pages are vacuumed, the WAL truncated), not the volume written.
    on_disk = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert on_disk < 4 * cap


def test_stored_bytes_survive_reopen(tmp_path: Path) -> None:
    clock = Clock()
    store = _store(tmp_path, clock)
    store.put_many([doc(pad=100), doc(pad=200)])
    total = store.stored_bytes
    store.close()
    again = _store(tmp_path, clock)
    assert again.stored_bytes == total > 300
    assert again.count() == 2


def test_a_document_larger_than_the_cap_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path, Clock(), max_bytes=1 << 16)
    stored, purged = store.put_many([doc(pad=1 << 17), doc()])
    assert (stored, purged) == (1, 0)
    assert store.count() == 1


def test_filters_and_delete(tmp_path: Path) -> None:
    clock = Clock()
    store = _store(tmp_path, clock)
    a = doc(tenant="acme", status=502)
    clock.t += 1
    b = doc(tenant="acme", status=404)
    clock.t += 1
    c = doc(tenant="globex", status=503)
    store.put_many([a])
    clock.t += 1
    store.put_many([b, c])
    assert [s.id for s in store.list(SnapshotFilter(tenant="acme"))][-1] == a["snapshot_id"]
    assert {s.id for s in store.list(SnapshotFilter(status_class=5))} == {a["snapshot_id"], c["snapshot_id"]}
    assert [s.id for s in store.list(SnapshotFilter(status=404))] == [b["snapshot_id"]]
    assert len(store.list(SnapshotFilter(limit=1))) == 1
    assert store.list(SnapshotFilter(since=clock.t))[0].tenant in ("acme", "globex")
    assert store.get(a["snapshot_id"]) == a
    assert store.delete(a["snapshot_id"]) is True
    assert store.delete(a["snapshot_id"]) is False
    assert store.get(a["snapshot_id"]) is None
    assert store.count() == 2


def test_retention_is_never_more_than_30_days() -> None:
    assert load_settings(env={}).snapshots.retention_days == 7
    assert load_settings(env={}, overrides={"snapshots.retention_days": "30"}).snapshots.retention_days == 30
    with pytest.raises(ConfigError) as err:
        load_settings(env={}, overrides={"snapshots.retention_days": "31"})
    assert err.value.key == "snapshots.retention_days" and "30 days" in err.value.reason
