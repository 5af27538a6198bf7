"""Masking against a generated corpus, through the real store: no spelling of a secret is stored.

Every case goes through ``SnapshotSink`` into a SQLite file; the assertion reads
the stored document text back from that file (``SELECT``), so what is checked is
exactly what ``/admin/snapshots`` would serve. The same corpus goes to a real
broker in ``tests/integration/test_kafka_snapshot_masking.py``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from link.settings import load_settings
from link.snapshots import SECRET_HEADERS, SnapshotSink, SnapshotStore
from tests.unit.snapshots.masking_corpus import INNOCUOUS_CASES, SECRET_CASES, Case, leaks, stored_value


def test_the_corpus_is_large_and_covers_every_position() -> None:
    assert len(SECRET_CASES) > 1_000 and len(INNOCUOUS_CASES) > 100
    positions = {c.name.rsplit("|", 1)[1] for c in SECRET_CASES}
    assert {"json-value", "json-nested", "json-array", "query", "form", "header", "text-is", "url-path",
            "xml", "referer", "json-cut"} <= positions


async def _store_all(tmp_path: Path, cases: list[Case]) -> dict[str, tuple[str, dict[str, Any]]]:
    settings = load_settings(env={}, overrides={
        "snapshots.db_path": str(tmp_path / "snap.db"), "snapshots.queue_max": 10_000,
        "registry.source": "none", "metering.enabled": False,
    })
    s = settings.snapshots
    sink = SnapshotSink(settings, SnapshotStore(s.db_path, retention_s=86_400, max_bytes=1 << 30))
    await sink.start()
    try:
        for case in cases:
            sink.offer(case.exchange)
        for _ in range(3000):
            if sink.store.count() >= len(cases):
                break
            await asyncio.sleep(0.01)
    finally:
        await sink.stop()
    with sqlite3.connect(tmp_path / "snap.db") as db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(snapshots)")]
        rows = db.execute("SELECT * FROM snapshots").fetchall()
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for row in rows:
        # Every text column as stored, so a secret kept in an index column would be seen too.
        text = "\n".join(str(v) for v in row)
        doc = next(json.loads(v) for v in row if isinstance(v, str) and v.startswith("{"))
        out[doc["request_id"]] = (text, doc)
    assert len(out) == len(cases), f"stored {len(out)} of {len(cases)} ({columns})"
    return out


@pytest.fixture(scope="module")
def stored_secrets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, dict[str, Any]]]:
    return asyncio.run(_store_all(tmp_path_factory.mktemp("corpus"), SECRET_CASES))


@pytest.fixture(scope="module")
def stored_innocuous(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, dict[str, Any]]]:
    return asyncio.run(_store_all(tmp_path_factory.mktemp("innocuous"), INNOCUOUS_CASES))


def test_no_spelling_of_any_secret_is_stored(stored_secrets: dict[str, tuple[str, dict[str, Any]]]) -> None:
    leaked = {c.name: leaks(stored_secrets[c.name][0], c) for c in SECRET_CASES}
    leaked = {k: v for k, v in leaked.items() if v}
    assert not leaked, f"{len(leaked)} of {len(SECRET_CASES)} cases leak, e.g. {list(leaked.items())[:5]}"


def _routine_redaction(case: Case) -> bool:
    # A standard credential header (x-api-key …) is always redacted and, by design, not a
    # "finding": every authenticated request carries one.
    header = case.exchange.request.headers
    return case.name.endswith("|header") and any(h in SECRET_HEADERS for h in header)


def test_every_secret_is_reported_as_found(stored_secrets: dict[str, tuple[str, dict[str, Any]]]) -> None:
    missed = [c.name for c in SECRET_CASES
              if not stored_secrets[c.name][1]["pii_found"] and not _routine_redaction(c)]
    assert not missed, missed[:10]


def test_innocuous_text_is_stored_as_sent(stored_innocuous: dict[str, tuple[str, dict[str, Any]]]) -> None:
    wrong = {}
    for case in INNOCUOUS_CASES:
        doc = stored_innocuous[case.name][1]
        for dotted, value in case.expected.items():
            got = stored_value(doc, dotted)
            if got != value:
                wrong[case.name] = (value, got)
    assert not wrong, f"{len(wrong)} over-masked, e.g. {list(wrong.items())[:5]}"
    assert not [c.name for c in INNOCUOUS_CASES if stored_innocuous[c.name][1]["pii_found"]]
