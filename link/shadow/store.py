"""Masked samples on disk: one JSON-lines file per UTC day, purged after the retention.

Nothing raw is ever written here: only :class:`~link.shadow.sample.Sample`
records, already masked. Bounds: at most ``max_pending`` samples wait in memory
(more are counted as dropped, never block the caller), at most ``max_bytes`` on
disk (the oldest day goes first), and no file older than ``retention_days``
(checked at start and on every flush).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from link.shadow.sample import Sample

__all__ = ["MAX_RETENTION_DAYS", "SampleStore"]

MAX_RETENTION_DAYS = 30
_PREFIX = "samples-"
_SUFFIX = ".jsonl"
_KEY_FILE = "pseudonym.key"


class SampleStore:
    """Append-only daily files of masked samples, bounded in memory, bytes and age."""

    def __init__(self, directory: str | Path, retention_days: float, max_bytes: int = 256 << 20,
                 max_pending: int = 10_000) -> None:
        if not 0 < retention_days <= MAX_RETENTION_DAYS:
            raise ValueError(f"retention_days must be in (0, {MAX_RETENTION_DAYS}], got {retention_days}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.retention_s = retention_days * 86_400
        self.max_bytes = max_bytes
        self._pending: deque[Sample] = deque()
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self.dropped = 0
        self.written = 0

    def pseudonym_key(self) -> bytes:
        """The key of the path pseudonyms, made once per store and kept beside the samples (mode 0600)."""
        path = self.directory / _KEY_FILE
        try:
            return bytes.fromhex(path.read_text().strip())
        except (OSError, ValueError):
            key = secrets.token_bytes(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key.hex())
            return key

    def add(self, sample: Sample) -> bool:
        """Queue a sample for the next flush; False (and counted) when the queue is full."""
        with self._lock:
            if len(self._pending) >= self._max_pending:
                self.dropped += 1
                return False
            self._pending.append(sample)
            return True

    def flush(self, now: float | None = None) -> int:
        """Write queued samples to today's file, then enforce age and size bounds."""
        with self._lock:
            batch = list(self._pending)
            self._pending.clear()
        now = time.time() if now is None else now
        if batch:
            by_day: dict[str, list[str]] = {}
            for s in batch:
                by_day.setdefault(_day(s.ts), []).append(json.dumps(s.to_dict(), separators=(",", ":")))
            for day, lines in by_day.items():
                with open(self.directory / f"{_PREFIX}{day}{_SUFFIX}", "a", encoding="utf-8") as f:
                    f.write("\n".join(lines) + "\n")
            self.written += len(batch)
        self.purge(now)
        return len(batch)

    def files(self) -> list[Path]:
        return sorted(self.directory.glob(f"{_PREFIX}*{_SUFFIX}"))

    def purge(self, now: float | None = None) -> list[Path]:
        """Delete files past the retention, then the oldest while over the byte cap."""
        now = time.time() if now is None else now
        removed: list[Path] = []
        cutoff = _day(now - self.retention_s)
        files = self.files()
        for path in files:
            if path.name[len(_PREFIX):-len(_SUFFIX)] < cutoff:
                path.unlink(missing_ok=True)
                removed.append(path)
        files = [p for p in files if p not in removed]
        total = sum(p.stat().st_size for p in files)
        while files and total > self.max_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)
            removed.append(oldest)
        return removed

    def samples(self, now: float | None = None) -> Iterator[Sample]:
        """Every stored sample still inside the retention (and those not yet flushed)."""
        now = time.time() if now is None else now
        oldest = now - self.retention_s
        for path in self.files():
            with open(path, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        sample = Sample.from_dict(json.loads(line))
                    except (ValueError, KeyError, TypeError):
                        continue  # a line cut by a crash
                    if sample.ts >= oldest:
                        yield sample
        with self._lock:
            pending = list(self._pending)
        yield from pending


def _day(ts: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(ts))
