"""A durable, append-only spool of metering records on local disk.

Layout: ``spool_dir/seg-<seq>.spool`` files, each starting with an 8-byte magic,
then records::

    0xA5 | body length (u32 BE) | CRC-32 of body (u32 BE) | body
    body = key length (u16 BE) | key | value

A ``cursor`` file remembers the first record the broker has not acknowledged.
Records are read back in append order from the cursor; the cursor moves only
after an acknowledgement, and a segment is deleted once the cursor has passed
it. A stale cursor (it is written without fsync) only means duplicates, which
``event_id`` lets consumers drop. On open, writing always starts a new segment,
so a record torn by a crash stays at the tail of an old one, where the reader
skips it (and resynchronises on the next record that checks out).

When appending would take the spool past ``max_bytes`` the newest records are
refused; the caller counts and reports them.

Thread-safety: every method may be called from any thread; ``sync`` is meant to
run in a worker thread so fsync never blocks the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from link.metering.event import Record

__all__ = ["Position", "Spool", "SpoolBatch", "SpoolError", "encode_record"]

_log = logging.getLogger("stoa.link.metering.spool")

SEGMENT_MAGIC = b"STOASPL1"
HEADER_BYTES = len(SEGMENT_MAGIC)
RECORD_MAGIC = 0xA5
_RECORD = struct.Struct(">BII")
_KEY = struct.Struct(">H")
MAX_BODY_BYTES = 16 << 20  # sanity bound when parsing a length that may be garbage
_SHRINK_BYTES = 1 << 20  # a drained active segment this large is replaced by an empty one
_SEGMENT_NAME = re.compile(r"^seg-(\d{12})\.spool$")

FsyncPolicy = Literal["always", "interval", "never"]
# (segment sequence number, byte offset in that segment)
Position = tuple[int, int]


class SpoolError(Exception):
    """The spool cannot be used (directory in use by another process, I/O error)."""


def encode_record(key: bytes | None, value: bytes) -> bytes:
    """One framed record; the key is limited to 65535 bytes (a tenant id)."""
    k = key or b""
    if len(k) > 0xFFFF:
        raise ValueError("record key longer than 65535 bytes")
    body = _KEY.pack(len(k)) + k + value
    return _RECORD.pack(RECORD_MAGIC, len(body), zlib.crc32(body)) + body


def _decode_body(body: bytes) -> Record:
    (klen,) = _KEY.unpack_from(body)
    key = body[_KEY.size : _KEY.size + klen]
    return (key or None), body[_KEY.size + klen :]


@dataclass(slots=True)
class SpoolBatch:
    """Records read from the cursor on; ``end`` is where the next read starts."""

    records: list[Record] = field(default_factory=list)
    end: Position = (0, HEADER_BYTES)
    corrupt: int = 0  # damaged regions skipped while reading this batch


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Spool:
    """Append-only segment files with an acknowledged-position cursor."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int,
        segment_bytes: int = 16 << 20,
        fsync: FsyncPolicy = "interval",
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        # Several segments fit under the cap, so acknowledged ones can be deleted while writing goes on.
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes // 4))
        self.fsync = fsync
        self._lock = threading.Lock()
        self._cursor_lock = threading.Lock()  # one writer of the cursor file at a time
        self._cursor_dirty = False  # acknowledged on the loop, not yet in the cursor file
        self._passed: list[Path] = []  # acknowledged segments whose files are still to be deleted
        self._sizes: dict[int, int] = {}  # seq -> bytes on disk, every live segment
        self._active_seq = 0
        self._active_fd = -1
        self._cursor: Position = (0, HEADER_BYTES)
        self._total = 0
        self._retired: list[int] = []  # fds of rolled segments awaiting their last fsync
        self._dirty = False
        self._dir_dirty = False
        self._lock_fd = -1

    # -- lifecycle -------------------------------------------------------------
    def open(self) -> None:
        """Take the directory (exclusively), recover segments and cursor, start a fresh segment."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SpoolError(f"cannot use spool directory {self.directory}: {exc.strerror}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise SpoolError(
                f"spool directory {self.directory} is in use by another process; give each one its own"
            ) from None
        with self._lock:
            try:
                self._recover()
                self._start_segment(max(self._sizes, default=0) + 1)
            except OSError as exc:
                raise SpoolError(f"cannot open the spool in {self.directory}: {exc.strerror}") from None

    def close(self) -> None:
        """Write the cursor, flush (per the fsync policy) and release the directory."""
        if self._active_fd >= 0:
            self.save_cursor()
        with self._lock:
            fds = [*self._retired]
            if self._active_fd >= 0:
                fds.append(self._active_fd)
            self._retired = []
            self._active_fd = -1
        for fd in fds:
            if self.fsync != "never":
                os.fsync(fd)
            os.close(fd)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # also releases the flock
            self._lock_fd = -1

    # -- writing ---------------------------------------------------------------
    def append(self, records: Iterable[Record]) -> int:
        """Append in order; return how many were taken (the rest would pass ``max_bytes``).

        Raises :class:`SpoolError` on an I/O error (disk full); nothing after the
        failing write is taken.
        """
        with self._lock:
            if self._active_fd < 0:
                raise SpoolError("spool is closed")
            taken = 0
            pending: list[bytes] = []
            pending_bytes = 0
            for key, value in records:
                rec = encode_record(key, value)
                if self._total + pending_bytes + len(rec) > self.max_bytes:
                    break
                active = self._sizes[self._active_seq] + pending_bytes
                if active > HEADER_BYTES and active + len(rec) > self.segment_bytes:
                    self._write(pending, pending_bytes)
                    pending, pending_bytes = [], 0
                    self._roll()
                pending.append(rec)
                pending_bytes += len(rec)
                taken += 1
            self._write(pending, pending_bytes)
            return taken

    def _write(self, parts: list[bytes], size: int) -> None:
        if not parts:
            return
        try:
            _write_all(self._active_fd, b"".join(parts))
        except OSError as exc:
            # Whatever reached the disk may end in a torn record: keep it at the tail of this segment.
            actual = os.fstat(self._active_fd).st_size
            self._total += actual - self._sizes[self._active_seq]
            self._sizes[self._active_seq] = actual
            with contextlib.suppress(OSError):  # no room for a new segment either: the reader resyncs
                self._roll()
            raise SpoolError(f"writing to the spool failed: {exc.strerror}") from None
        self._sizes[self._active_seq] += size
        self._total += size
        self._dirty = True

    def _start_segment(self, seq: int) -> None:
        path = self._path(seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        _write_all(fd, SEGMENT_MAGIC)
        self._active_seq, self._active_fd = seq, fd
        self._sizes[seq] = HEADER_BYTES
        self._total += HEADER_BYTES
        self._dirty = self._dir_dirty = True
        if self._cursor[0] not in self._sizes:
            self._cursor = (seq, HEADER_BYTES)

    def _roll(self) -> None:
        if self.fsync == "never":
            os.close(self._active_fd)
        else:
            self._retired.append(self._active_fd)  # fsynced and closed by the next sync()
        self._start_segment(self._active_seq + 1)

    def sync(self) -> None:
        """fsync what was written (and new directory entries); run it off the event loop."""
        with self._lock:
            if not self._dirty and not self._retired and not self._dir_dirty:
                return
            fds = [*self._retired]
            self._retired = []
            if self._active_fd >= 0:
                fds.append(os.dup(self._active_fd))  # a dup survives a concurrent roll
            dir_dirty, self._dir_dirty, self._dirty = self._dir_dirty, False, False
        for fd in fds:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if dir_dirty:
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    @property
    def needs_sync(self) -> bool:
        return self._dirty or bool(self._retired) or self._dir_dirty

    # -- reading and acknowledging ---------------------------------------------
    def read(
        self, max_records: int, max_bytes: int = 4 << 20, *, start: Position | None = None
    ) -> SpoolBatch:
        """Up to ``max_records`` records (about ``max_bytes``) in append order.

        From the cursor, or from ``start`` (the ``end`` of an earlier batch) to read ahead of
        acknowledgements.
        """
        with self._lock:
            sizes = dict(self._sizes)
            pos = self._cursor if start is None else start
        seqs = sorted(sizes)
        batch = SpoolBatch(end=pos)
        got_bytes = 0
        seq, off = pos
        while len(batch.records) < max_records and got_bytes < max_bytes:
            size = sizes.get(seq)
            if size is None or off >= size:
                later = [s for s in seqs if s > seq]
                if not later:
                    break  # caught up with the writer
                seq, off = later[0], HEADER_BYTES
                batch.end = (seq, off)
                continue
            # Sized for the records still wanted (~1 KiB each, more reads if they are larger): a
            # batch of a few hundred events must not read megabytes ahead on every replay step.
            wanted = (64 << 10) + (max_records - len(batch.records)) * 1024
            chunk = self._pread(seq, off, min(size - off, max(max_bytes - got_bytes, 64 << 10), wanted))
            used, n_bytes = self._parse(chunk, seq, off, size, batch, max_records)
            got_bytes += n_bytes
            off += used
            batch.end = (seq, off)
        return batch

    def _pread(self, seq: int, off: int, length: int) -> bytes:
        fd = os.open(self._path(seq), os.O_RDONLY)
        try:
            return os.pread(fd, length, off)
        finally:
            os.close(fd)

    def _parse(
        self, chunk: bytes, seq: int, base: int, size: int, batch: SpoolBatch, max_records: int
    ) -> tuple[int, int]:
        """Parse records from ``chunk`` (read at ``base``); return (bytes consumed, record bytes)."""
        pos = 0
        got = 0
        while len(batch.records) < max_records and pos < len(chunk):
            status, length = self._check(chunk, pos)
            if status == "ok":
                body = chunk[pos + _RECORD.size : pos + _RECORD.size + length]
                batch.records.append(_decode_body(body))
                pos += _RECORD.size + length
                got += _RECORD.size + length
                continue
            if status == "short" and base + pos + _RECORD.size + length <= size:
                if pos == 0:  # one record larger than the chunk: read exactly it
                    chunk = self._pread(seq, base, _RECORD.size + length)
                    if len(chunk) == _RECORD.size + length:
                        continue
                else:
                    break  # the caller reads on from here
            # Damaged: a torn tail or flipped bits. Resynchronise on the next record that checks out.
            nxt = self._resync(seq, base + pos + 1, size)
            _log.warning(
                "metering spool: damaged record in %s at byte %d; skipped %d bytes",
                self._path(seq).name, base + pos, nxt - (base + pos),
            )
            batch.corrupt += 1
            return nxt - base, got
        return pos, got

    @staticmethod
    def _check(buf: bytes, pos: int) -> tuple[Literal["ok", "short", "bad"], int]:
        if len(buf) - pos < _RECORD.size:
            return "short", 0
        magic, length, crc = _RECORD.unpack_from(buf, pos)
        if magic != RECORD_MAGIC or length < _KEY.size or length > MAX_BODY_BYTES:
            return "bad", 0
        end = pos + _RECORD.size + length
        if end > len(buf):
            return "short", length
        body = buf[pos + _RECORD.size : end]
        if zlib.crc32(body) != crc or _KEY.unpack_from(body)[0] > length - _KEY.size:
            return "bad", 0
        return "ok", length

    def _resync(self, seq: int, start: int, size: int) -> int:
        """The offset of the next valid record at or after ``start`` (``size`` when none)."""
        if start >= size:
            return size
        data = self._pread(seq, start, size - start)
        pos = data.find(RECORD_MAGIC.to_bytes(1, "big"))
        while pos >= 0:
            if self._check(data, pos)[0] == "ok":
                return start + pos
            pos = data.find(RECORD_MAGIC.to_bytes(1, "big"), pos + 1)
        return size

    def ack(self, end: Position) -> None:
        """Everything before ``end`` reached the broker: move the cursor, forget passed segments.

        Memory only (this runs on the event loop after every acknowledged batch): the cursor file
        and the passed segments' files are written and deleted by :meth:`save_cursor`, off the loop.
        Creating and renaming a file took milliseconds here under load, the whole request path's tail.
        """
        with self._lock:
            if end <= self._cursor:
                return
            seq, off = end
            self._cursor = end
            for old in [s for s in self._sizes if s < seq]:
                self._forget(old)
            if seq == self._active_seq and off >= self._sizes[seq] >= _SHRINK_BYTES:
                # Fully drained: start over so the spool shrinks back to one empty segment. Not for
                # a small segment: every batch is written ahead here, and a file per batch would churn.
                old = self._active_seq
                self._roll()
                self._forget(old)
                self._cursor = (self._active_seq, HEADER_BYTES)
            self._cursor_dirty = True

    @property
    def cursor_dirty(self) -> bool:
        """Acknowledgements not yet written to the cursor file (see :meth:`save_cursor`)."""
        return self._cursor_dirty or bool(self._passed)

    def save_cursor(self) -> None:
        """Write the cursor file and delete the segments it passed; file I/O, so off the event loop.

        Until it runs, a crash replays what was acknowledged since: duplicates, never loss.
        """
        with self._cursor_lock:
            with self._lock:
                cursor, dirty, passed = self._cursor, self._cursor_dirty, self._passed
                self._cursor_dirty, self._passed = False, []
            if dirty:
                tmp = self.directory / "cursor.tmp"
                tmp.write_text(f"{cursor[0]} {cursor[1]}\n")
                os.replace(tmp, self.directory / "cursor")
            for path in passed:  # after the cursor moved past them: a crash in between only re-deletes
                path.unlink(missing_ok=True)

    def _forget(self, seq: int) -> None:
        size = self._sizes.pop(seq)
        self._total -= size
        self._passed.append(self._path(seq))

    def _delete(self, seq: int) -> None:
        size = self._sizes.pop(seq)
        self._total -= size
        self._path(seq).unlink(missing_ok=True)

    # -- state -------------------------------------------------------------------
    @property
    def size_bytes(self) -> int:
        """Bytes on disk, acknowledged or not (what the cap applies to)."""
        return self._total

    def pending_bytes(self) -> int:
        """Bytes of records not yet acknowledged (framing included)."""
        with self._lock:
            seq, off = self._cursor
            total = 0
            for s, size in self._sizes.items():
                if s > seq:
                    total += size - HEADER_BYTES
                elif s == seq:
                    total += max(0, size - off)
            return total

    def has_pending(self) -> bool:
        return self.pending_bytes() > 0

    @property
    def cursor(self) -> Position:
        return self._cursor

    @property
    def end(self) -> Position:
        """Where the next appended record will start (the end of everything written)."""
        with self._lock:
            return (self._active_seq, self._sizes.get(self._active_seq, HEADER_BYTES))

    # -- recovery ----------------------------------------------------------------
    def _path(self, seq: int) -> Path:
        return self.directory / f"seg-{seq:012d}.spool"

    def _recover(self) -> None:
        for entry in os.scandir(self.directory):
            m = _SEGMENT_NAME.match(entry.name)
            if m is None:
                continue
            seq = int(m.group(1))
            with open(entry.path, "rb") as f:
                head = f.read(HEADER_BYTES)
            if head != SEGMENT_MAGIC:
                if len(head) < HEADER_BYTES and entry.stat().st_size < HEADER_BYTES:
                    os.unlink(entry.path)  # created but never written: nothing to lose
                    continue
                _log.error("metering spool: %s is not a spool segment; moved aside", entry.name)
                os.replace(entry.path, entry.path + ".bad")
                continue
            self._sizes[seq] = entry.stat().st_size
        self._total = sum(self._sizes.values())
        self._cursor = self._load_cursor()
        for seq in [s for s in self._sizes if s < self._cursor[0]]:
            self._delete(seq)
        if self._cursor[0] not in self._sizes:
            later = sorted(s for s in self._sizes if s >= self._cursor[0])
            self._cursor = (later[0], HEADER_BYTES) if later else (0, HEADER_BYTES)
        pending = sum(size - HEADER_BYTES for size in self._sizes.values()) - (self._cursor[1] - HEADER_BYTES)
        if pending > 0:
            _log.info("metering spool: %d bytes from a previous run to replay", pending)

    def _load_cursor(self) -> Position:
        try:
            text = (self.directory / "cursor").read_text()
            seq_s, off_s = text.split()
            seq, off = int(seq_s), int(off_s)
        except FileNotFoundError:
            return (min(self._sizes, default=0), HEADER_BYTES)
        except (OSError, ValueError):
            _log.warning("metering spool: cursor file unreadable; replaying every segment")
            return (min(self._sizes, default=0), HEADER_BYTES)
        return (seq, max(off, HEADER_BYTES))
