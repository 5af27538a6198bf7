"""The local snapshot store: one SQLite file in WAL mode, bounded by age and by size.

Writes come from one background thread (:class:`~link.snapshots.sink.SnapshotSink`);
the admin API reads through worker threads. One connection, guarded by a lock,
serves both: snapshots are rare (errors on opted-in routes), so contention is not
worth a connection pool.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SnapshotFilter", "SnapshotStore", "StoredSnapshot"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id          TEXT PRIMARY KEY,
    created_at  REAL NOT NULL,
    tenant      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    route       TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    error_type  TEXT NOT NULL,
    trace_id    TEXT NOT NULL,
    size        INTEGER NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_created ON snapshots (created_at);
CREATE INDEX IF NOT EXISTS snapshots_tenant ON snapshots (tenant, created_at);
"""

_SUMMARY_COLUMNS = "id, created_at, tenant, status, route, method, path, error_type, trace_id, size"


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    """One row's summary (the listing shows these, not whole documents)."""

    id: str
    created_at: float
    tenant: str
    status: int
    route: str
    method: str
    path: str
    error_type: str
    trace_id: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "tenant_id": self.tenant,
            "response_status": self.status,
            "route": self.route,
            "request_method": self.method,
            "request_path": self.path,
            "error_type": self.error_type,
            "trace_id": self.trace_id,
            "size_bytes": self.size,
        }


@dataclass(frozen=True, slots=True)
class SnapshotFilter:
    """Listing filters; ``status_class`` is 4 or 5 for "4xx"/"5xx"."""

    tenant: str | None = None
    status: int | None = None
    status_class: int | None = None
    since: float | None = None
    limit: int = 50


class SnapshotStore:
    """Snapshots by id, newest first; ``max_bytes`` caps the stored documents' total size."""

    def __init__(
        self,
        path: str | Path,
        *,
        retention_s: float,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.retention_s = retention_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._bytes = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        """Create the file and schema if needed (idempotent)."""
        with self._lock:
            if self._db is not None:
                return
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            # auto_vacuum must be chosen before the first table exists; it lets purges shrink the file.
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            self._bytes = self._sum(db)
            self._db = db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("snapshot store is not open")
        return self._db

    @property
    def stored_bytes(self) -> int:
        """Total size of the stored documents (what ``max_bytes`` caps)."""
        return self._bytes

    # -- writes (the writer thread) ----------------------------------------------------------
    def put_many(self, docs: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Store documents in one transaction, then enforce the size cap.

        Returns (stored, purged). A document larger than the whole cap is not stored.
        """
        rows = []
        now = self._clock()
        for doc in docs:
            text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
            size = len(text.encode())
            if size > self.max_bytes:
                continue
            rows.append((
                str(doc["snapshot_id"]), now, str(doc.get("tenant_id", "")),
                int(doc.get("response_status", 0)), str(doc.get("route", "")),
                str(doc.get("request_method", "")), str(doc.get("request_path", "")),
                str(doc.get("error_type", "")), str(doc.get("trace_id", "")), size, text,
            ))
        if not rows:
            return 0, 0
        with self._lock:
            db = self._conn()
            before = db.total_changes
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR IGNORE INTO snapshots VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            stored = db.total_changes - before
            if stored == len(rows):
                self._bytes += sum(r[9] for r in rows)
            else:  # an id was already there (a re-offered exchange): count from the table
                self._bytes = self._sum(db)
            purged = self._enforce_cap(db)
        return stored, purged

    @staticmethod
    def _sum(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT COALESCE(SUM(size), 0) FROM snapshots").fetchone()[0])

    def _enforce_cap(self, db: sqlite3.Connection) -> int:
        """Drop the oldest snapshots until the total fits under ``max_bytes`` (lock held)."""
        if self._bytes <= self.max_bytes:
            return 0
        excess = self._bytes - self.max_bytes
        doomed: list[tuple[str, int]] = []
        freed = 0
        for sid, size in db.execute("SELECT id, size FROM snapshots ORDER BY created_at, rowid"):
            doomed.append((sid, int(size)))
            freed += int(size)
            if freed >= excess:
                break
        self._delete_rows(db, doomed)
        return len(doomed)

    def purge_expired(self) -> int:
        """Delete snapshots older than the retention; returns how many."""
        cutoff = self._clock() - self.retention_s
        with self._lock:
            db = self._conn()
            rows = db.execute("SELECT id, size FROM snapshots WHERE created_at < ?", (cutoff,)).fetchall()
            self._delete_rows(db, rows)
        return len(rows)

    def _delete_rows(self, db: sqlite3.Connection, rows: Sequence[tuple[str, int]]) -> None:
        """Delete (id, size) rows in one transaction (lock held)."""
        if not rows:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM snapshots WHERE id = ?", [(sid,) for sid, _ in rows])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._bytes = max(0, self._bytes - sum(size for _, size in rows))
        # Give freed pages back to the file system, and fold the WAL in, so disk use follows the cap.
        db.execute("PRAGMA incremental_vacuum")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def delete(self, snapshot_id: str) -> bool:
        with self._lock:
            db = self._conn()
            row = db.execute("SELECT id, size FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
            if row is not None:
                self._delete_rows(db, [row])
        return row is not None

    # -- reads (admin API) -------------------------------------------------------------------
    def get(self, snapshot_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn().execute("SELECT doc FROM snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        if row is None:
            return None
        doc: dict[str, Any] = json.loads(row[0])
        return doc

    def list(self, flt: SnapshotFilter = SnapshotFilter()) -> list[StoredSnapshot]:
        where: list[str] = []
        args: list[Any] = []
        if flt.tenant is not None:
            where.append("tenant = ?")
            args.append(flt.tenant)
        if flt.status is not None:
            where.append("status = ?")
            args.append(flt.status)
        if flt.status_class is not None:
            where.append("status >= ? AND status < ?")
            args += [flt.status_class * 100, flt.status_class * 100 + 100]
        if flt.since is not None:
            where.append("created_at >= ?")
            args.append(flt.since)
        sql = f"SELECT {_SUMMARY_COLUMNS} FROM snapshots"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        args.append(flt.limit)
        with self._lock:
            rows = self._conn().execute(sql, args).fetchall()
        return [StoredSnapshot(*r) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._conn().execute("SELECT COUNT(*) FROM snapshots").fetchone()[0])
