"""The metering write-ahead spool against SQLite doing the same job, in the same run.

The job (ADR 0003, 0011): append batches of ~650-byte records (key = tenant), read them back
in order from a cursor, acknowledge (move the cursor, free the space). SQLite does it the
way one would write it: one table ``(id INTEGER PRIMARY KEY, key BLOB, value BLOB)`` in WAL
mode, one transaction per batch (``executemany``), reading ``WHERE id > ? ORDER BY id LIMIT n``,
acknowledging with ``DELETE WHERE id <= ?``.

Two durability levels, matched on both sides:
  - ``page cache``: spool fsync ``never`` / SQLite ``synchronous=OFF`` (what a crash of the
    process, not of the machine, survives; the spool's ``interval`` policy adds one fsync
    every 200 ms off the loop)
  - ``fsync per batch``: spool ``append`` + ``sync()`` / SQLite ``synchronous=FULL``

and the bytes on disk when full and once everything was acknowledged (the cap,
``metering.spool_max_bytes``, counts bytes on disk).

Prints µs per record (wall time, one thread) and the ratio to the spool.

    python bench/bench_spool_sqlite.py [--records 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from link.metering.spool import Spool

Record = tuple[bytes | None, bytes]


def _records(n: int) -> list[Record]:
    out: list[Record] = []
    for i in range(n):
        event = {"event_id": str(uuid.uuid4()), "timestamp": "2026-12-02T00:00:00Z", "gateway_id": "gw-1",
                 "instance": "kong-prod-01", "mode": "sidecar", "tenant_id": f"tenant-{i % 50}",
                 "user_id": f"user-{i}", "consumer_id": "billing-app", "api": "invoices",
                 "route": "/v1/invoices/{id}", "method": "GET", "http_status": 200, "status": "success",
                 "latency_ms": 12.5, "t_gateway_ms": 0.4, "t_backend_ms": 12.1, "request_size_bytes": 0,
                 "response_size_bytes": 1840, "scopes": ["invoices:read"], "roles": ["viewer"],
                 "trace_id": uuid.uuid4().hex, "padding": "x" * 120}
        out.append((f"tenant-{i % 50}".encode(), json.dumps(event).encode()))
    return out


def _batches(records: list[Record], size: int) -> list[list[Record]]:
    return [records[i:i + size] for i in range(0, len(records), size)]


DRAIN_BATCH = 512  # the sink reads back metering.batch_max records at a time


def _disk_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def spool_run(records: list[Record], batch: int, durable: bool) -> tuple[float, float, int, int]:
    """(append µs/record, read+ack µs/record, bytes on disk when full, bytes on disk once drained)."""
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "spool", max_bytes=1 << 34, fsync="always" if durable else "never")
        spool.open()
        start = time.perf_counter()
        for chunk in _batches(records, batch):
            spool.append(chunk)
            if durable:
                spool.sync()
        appended = time.perf_counter()
        full = _disk_bytes(Path(tmp))
        got = 0
        while got < len(records):
            read = spool.read(DRAIN_BATCH)
            got += len(read.records)
            spool.ack(read.end)
        drained = time.perf_counter()
        spool.close()
        empty = _disk_bytes(Path(tmp))
    n = len(records)
    return (appended - start) / n * 1e6, (drained - appended) / n * 1e6, full, empty


def sqlite_run(records: list[Record], batch: int, durable: bool) -> tuple[float, float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "spool.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
        db.execute("CREATE TABLE spool (id INTEGER PRIMARY KEY, key BLOB, value BLOB)")
        start = time.perf_counter()
        for chunk in _batches(records, batch):
            db.execute("BEGIN")
            db.executemany("INSERT INTO spool (key, value) VALUES (?, ?)", chunk)
            db.execute("COMMIT")
        appended = time.perf_counter()
        full = _disk_bytes(Path(tmp))
        cursor = 0
        got = 0
        while got < len(records):
            rows = db.execute("SELECT id, key, value FROM spool WHERE id > ? ORDER BY id LIMIT ?",
                              (cursor, DRAIN_BATCH)).fetchall()
            got += len(rows)
            cursor = rows[-1][0]
            db.execute("DELETE FROM spool WHERE id <= ?", (cursor,))
        drained = time.perf_counter()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        empty = _disk_bytes(Path(tmp))  # deleted rows' pages stay in the file (no VACUUM)
        db.close()
    n = len(records)
    return (appended - start) / n * 1e6, (drained - appended) / n * 1e6, full, empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    records = _records(args.records)
    print(f"{len(records)} records of ~{statistics.mean(len(v) for _, v in records):.0f} bytes, "
          f"median of {args.rounds} rounds; µs per record")
    print(f"append: µs per record in batches of `batch`; drain: read {DRAIN_BATCH} at a time and acknowledge; "
          "x = SQLite / spool; disk: MiB when full -> once drained")
    print(f"{'durability':<16} {'batch':>5} {'spool append':>13} {'sqlite insert':>14} {'x':>6} "
          f"{'spool drain':>12} {'sqlite drain':>13} {'x':>6} {'spool disk':>14} {'sqlite disk':>14}")
    shapes = [(False, 1), (False, 64), (False, 512), (True, 1), (True, 64), (True, 512)]
    for durable, batch in shapes:
        n = records if not (durable and batch == 1) else records[: max(200, len(records) // 20)]
        runs: dict[str, list[tuple[float, float, int, int]]] = {"spool": [], "sqlite": []}
        impl: dict[str, Callable[[list[Record], int, bool], tuple[float, float, int, int]]] = {
            "spool": spool_run, "sqlite": sqlite_run}
        for _ in range(args.rounds):
            for name, run in impl.items():  # interleaved, so drift spreads over both
                runs[name].append(run(n, batch, durable))
        sa, sd = (statistics.median(r[i] for r in runs["spool"]) for i in (0, 1))
        qa, qd = (statistics.median(r[i] for r in runs["sqlite"]) for i in (0, 1))
        label = "fsync per batch" if durable else "page cache"
        mib = 1 << 20
        sdisk = f"{runs['spool'][-1][2] / mib:.1f}->{runs['spool'][-1][3] / mib:.2f}"
        qdisk = f"{runs['sqlite'][-1][2] / mib:.1f}->{runs['sqlite'][-1][3] / mib:.2f}"
        print(f"{label:<16} {batch:>5} {sa:>13.2f} {qa:>14.2f} {qa / sa:>6.1f} {sd:>12.2f} {qd:>13.2f} "
              f"{qd / sd:>6.1f} {sdisk:>14} {qdisk:>14}")


if __name__ == "__main__":
    main()
