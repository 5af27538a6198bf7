"""The durable spool: order, acknowledgements, recovery, damage, the size cap."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from link.metering.spool import HEADER_BYTES, Spool, SpoolError, encode_record


def _records(n: int, start: int = 0, size: int = 40) -> list[tuple[bytes | None, bytes]]:
    # Every fourth record has no key (an anonymous request).
    return [
        ((b"t%d" % (i % 3)) if i % 4 else None, (b"%08d" % i).ljust(size, b"x"))
        for i in range(start, start + n)
    ]


def _open(path: Path, **kw: object) -> Spool:
    spool = Spool(path, max_bytes=kw.pop("max_bytes", 1 << 20), **kw)  # type: ignore[arg-type]
    spool.open()
    return spool


def _drain(spool: Spool, batch: int = 7) -> list[tuple[bytes | None, bytes]]:
    out: list[tuple[bytes | None, bytes]] = []
    while True:
        b = spool.read(batch)
        if b.end == spool.cursor:
            return out
        out.extend(b.records)
        spool.ack(b.end)


def test_reads_back_in_append_order_with_keys(tmp_path: Path) -> None:
    spool = _open(tmp_path)
    recs = _records(50)
    assert spool.append(recs) == 50
    assert _drain(spool) == recs
    assert not spool.has_pending()
    spool.close()


def test_read_ahead_from_a_start_position_does_not_move_the_cursor(tmp_path: Path) -> None:
    spool = _open(tmp_path)
    spool.append(_records(10))
    first = spool.read(4)
    second = spool.read(4, start=first.end)
    assert [r[1][:8] for r in first.records + second.records] == [b"%08d" % i for i in range(8)]
    assert spool.cursor != first.end  # nothing acknowledged yet
    again = spool.read(4)
    assert again.records == first.records
    spool.close()


def test_unacknowledged_records_survive_a_reopen(tmp_path: Path) -> None:
    spool = _open(tmp_path)
    recs = _records(30)
    spool.append(recs)
    b = spool.read(10)
    spool.ack(b.end)
    spool.close()

    reopened = _open(tmp_path)
    assert reopened.has_pending()
    assert _drain(reopened) == recs[10:]
    reopened.close()


def test_an_abandoned_spool_without_close_is_replayed(tmp_path: Path) -> None:
    """A crash leaves no close(): the next process reads what reached the files."""
    spool = _open(tmp_path, fsync="never")
    recs = _records(20)
    spool.append(recs)
    # Simulate the process dying: drop the lock and the fd without the orderly close.
    os.close(spool._active_fd)
    os.close(spool._lock_fd)
    assert _drain(_open(tmp_path)) == recs


def test_segments_roll_and_acknowledged_ones_are_deleted(tmp_path: Path) -> None:
    spool = _open(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    recs = _records(300, size=100)
    assert spool.append(recs) == 300
    segments = sorted(tmp_path.glob("seg-*.spool"))
    assert len(segments) > 5
    got = _drain(spool, batch=50)
    assert got == recs
    # Acknowledging is memory only (it runs on the event loop); the files go with the cursor's write.
    assert len(sorted(tmp_path.glob("seg-*.spool"))) > 5 and spool.cursor_dirty
    spool.save_cursor()
    assert not spool.cursor_dirty
    # Fully drained: only the active segment is left (emptied once it is large, see _SHRINK_BYTES).
    left = sorted(tmp_path.glob("seg-*.spool"))
    assert len(left) == 1 and left[0].stat().st_size <= spool.segment_bytes
    assert spool.size_bytes == left[0].stat().st_size and not spool.has_pending()
    spool.close()


def test_the_cap_refuses_the_newest_records(tmp_path: Path) -> None:
    spool = _open(tmp_path, max_bytes=1 << 16)
    recs = _records(2000, size=60)
    taken = spool.append(recs)
    assert 0 < taken < 2000
    assert spool.size_bytes <= 1 << 16
    assert spool.append(_records(1, start=5000)) == 0
    # What was taken is the oldest part, intact and in order.
    assert _drain(spool, batch=500) == recs[:taken]
    # Once drained there is room again.
    assert spool.append(_records(5)) == 5
    spool.close()


def test_a_truncated_tail_record_is_skipped_with_a_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = _open(tmp_path)
    recs = _records(10)
    spool.append(recs)
    spool.close()
    seg = max(tmp_path.glob("seg-*.spool"))
    data = seg.read_bytes()
    last = len(encode_record(*recs[-1]))
    seg.write_bytes(data[: len(data) - last // 2])  # the crash tore the last record

    with caplog.at_level(logging.WARNING, logger="stoa.link.metering.spool"):
        reopened = _open(tmp_path)
        got = _drain(reopened)
    assert got == recs[:-1]
    assert "damaged record" in caplog.text
    # New appends go to a fresh segment and are read after the damaged one.
    reopened.append(_records(2, start=100))
    assert _drain(reopened) == _records(2, start=100)
    reopened.close()


def test_a_corrupted_record_in_the_middle_is_skipped_and_reading_resumes(tmp_path: Path) -> None:
    spool = _open(tmp_path)
    recs = _records(10)
    spool.append(recs)
    spool.close()
    seg = max(tmp_path.glob("seg-*.spool"))
    data = bytearray(seg.read_bytes())
    rec_len = len(encode_record(*recs[0]))
    flip = HEADER_BYTES + 4 * rec_len + rec_len - 3  # inside record #4's value
    data[flip] ^= 0xFF
    seg.write_bytes(bytes(data))

    reopened = _open(tmp_path)
    b = reopened.read(100)
    assert b.corrupt == 1
    assert b.records == recs[:4] + recs[5:]
    reopened.close()


def test_acknowledgements_reach_the_cursor_file_only_when_saved(tmp_path: Path) -> None:
    """A crash before save_cursor() replays what was acknowledged since: duplicates, never loss."""
    spool = _open(tmp_path, fsync="never")
    recs = _records(6)
    spool.append(recs)
    spool.ack(spool.read(2).end)
    spool.save_cursor()
    spool.ack(spool.read(2).end)  # not saved: the process dies here (no close)
    os.close(spool._lock_fd)  # what the kernel does for a killed process: the flock goes
    spool._lock_fd = -1
    assert _drain(_open(tmp_path)) == recs[2:]


def test_a_garbage_cursor_means_replaying_everything(tmp_path: Path) -> None:
    spool = _open(tmp_path)
    recs = _records(5)
    spool.append(recs)
    spool.ack(spool.read(2).end)
    spool.close()
    (tmp_path / "cursor").write_text("not a cursor")
    assert _drain(_open(tmp_path)) == recs  # duplicates, never loss


def test_a_second_process_cannot_share_the_directory(tmp_path: Path) -> None:
    spool = _open(tmp_path)
    other = Spool(tmp_path, max_bytes=1 << 20)
    with pytest.raises(SpoolError, match="in use"):
        other.open()
    spool.close()
    other.open()  # free again once the first one closed
    other.close()


@pytest.mark.parametrize("policy", ["always", "interval", "never"])
def test_sync_and_close_under_each_fsync_policy(tmp_path: Path, policy: str) -> None:
    spool = _open(tmp_path, fsync=policy, segment_bytes=4096)
    spool.append(_records(200, size=100))
    assert spool.needs_sync
    spool.sync()
    assert not spool.needs_sync
    spool.close()
    assert len(_drain(_open(tmp_path), batch=64)) == 200


def test_append_after_close_is_an_error(tmp_path: Path) -> None:
    spool = _open(tmp_path)
    spool.close()
    with pytest.raises(SpoolError):
        spool.append(_records(1))


def test_a_foreign_file_named_like_a_segment_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "seg-000000000001.spool").write_bytes(b"something else entirely")
    spool = _open(tmp_path)
    assert (tmp_path / "seg-000000000001.spool.bad").exists()
    assert not spool.has_pending()
    spool.close()


def test_a_small_batch_reads_little_of_a_large_spool(tmp_path: Path) -> None:
    """A replay step of a few records reads about that much, not megabytes ahead of them."""
    spool = _open(tmp_path, max_bytes=64 << 20, segment_bytes=32 << 20)
    spool.append(_records(20_000, size=400))
    read: list[int] = []
    real = spool._pread

    def counting(seq: int, off: int, length: int) -> bytes:
        read.append(length)
        return real(seq, off, length)

    spool._pread = counting  # type: ignore[method-assign]
    batch = spool.read(10)
    assert len(batch.records) == 10
    assert sum(read) <= 128 << 10
    big = spool.read(2_000, start=batch.end)  # records larger than the estimate: more reads, all of them
    assert len(big.records) == 2_000 and [r[1][:8] for r in big.records[:2]] == [b"00000010", b"00000011"]
    spool.close()
