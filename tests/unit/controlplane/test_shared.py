"""A multi-worker pod's heartbeat: the workers' files, added up and judged by the first process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from link.controlplane.shared import (
    STALE_S,
    GatewayIdFollower,
    clear_worker_files,
    pod_view,
    write_gateway_id,
    write_worker_file,
)
from tests.harness.controlplane import until

OWN = {"requests_total": 10, "requests_denied": 1, "requests_finished": 9, "errors_total": 0}


def test_the_pod_counts_every_workers_requests(tmp_path: Path) -> None:
    write_worker_file(tmp_path, "101", {"requests_total": 5, "requests_denied": 2}, ready=True)
    write_worker_file(tmp_path, "102", {"requests_total": 7, "errors_total": 3}, ready=True)
    view = pod_view(tmp_path, OWN)
    assert view.counters == {"requests_total": 22, "requests_denied": 3, "requests_finished": 9, "errors_total": 3}
    assert view.workers == 2 and view.unwell == ()


def test_alone_the_first_process_reports_its_own(tmp_path: Path) -> None:
    write_gateway_id(tmp_path / "gateway-id", "gw-1")  # the id file is not a worker's
    view = pod_view(tmp_path, OWN)
    assert view.counters == OWN and view.workers == 0 and view.unwell == ()
    assert pod_view(tmp_path / "missing", OWN).counters == OWN


def test_a_worker_not_ready_or_silent_is_named(tmp_path: Path) -> None:
    write_worker_file(tmp_path, "201", {"requests_total": 1}, ready=False)
    write_worker_file(tmp_path, "202", {"requests_total": 2}, ready=True)
    view = pod_view(tmp_path, {}, now=_at(tmp_path, "202") + STALE_S + 5)
    # Both are past the staleness bound at that time; silence is what is said first.
    assert view.unwell == ("201: silent for 15 s", "202: silent for 15 s")
    view = pod_view(tmp_path, {})
    assert view.unwell == ("201: not ready",)
    assert view.counters == {"requests_total": 3}  # a worker not ready still served what it counted


def test_a_worker_that_never_wrote_its_file_is_unwell_once_it_had_time_to(tmp_path: Path) -> None:
    """A worker that died at start-up leaves no file at all: only the count of started ones shows it."""
    write_worker_file(tmp_path, "301", {"requests_total": 4}, ready=True)
    now = _at(tmp_path, "301")
    # Within the grace period a late starter is not reported; afterwards, the missing one is.
    assert pod_view(tmp_path, {}, now=now, expected=2, since=now - 1).unwell == ()
    late = pod_view(tmp_path, {}, now=now, expected=2, since=now - STALE_S - 1)
    assert late.unwell == ("1 worker of 2 never reported",) and late.counters == {"requests_total": 4}
    assert pod_view(tmp_path, {}, now=now, expected=3, since=now - STALE_S - 1).unwell == (
        "2 workers of 3 never reported",)
    assert pod_view(tmp_path, {}, now=now, expected=1, since=now - STALE_S - 1).unwell == ()
    # The reporting process's own file (when it has one) is not a worker's.
    write_worker_file(tmp_path, "300", {}, ready=True)
    assert pod_view(tmp_path, {}, own_key="300", now=now, expected=2, since=now - STALE_S - 1).unwell == (
        "1 worker of 2 never reported",)


@pytest.mark.parametrize("content", [
    "", "{", "[]", "null", '{"counters": {}}', '{"counters": [], "ready": true, "at": 1}',
    '{"counters": {}, "ready": true, "at": "soon"}', "\xff",
])
def test_an_unreadable_file_is_named_and_counts_nothing(tmp_path: Path, content: str) -> None:
    (tmp_path / "counters-301.json").write_text(content, encoding="utf-8", errors="surrogateescape")
    view = pod_view(tmp_path, OWN)
    assert view.counters == OWN
    assert view.unwell == ("301: unreadable",)


def test_hostile_values_are_left_out(tmp_path: Path) -> None:
    body = {"counters": {"requests_total": -5, "requests_denied": "7", "errors_total": 1.5, "flag": True, "ok": 2},
            "ready": True, "at": 1e18}
    (tmp_path / "counters-401.json").write_text(json.dumps(body), encoding="utf-8")
    assert pod_view(tmp_path, {}).counters == {"ok": 2}


def test_files_of_an_earlier_run_are_cleared(tmp_path: Path) -> None:
    write_worker_file(tmp_path, "501", {"requests_total": 99}, ready=True)
    write_gateway_id(tmp_path / "gateway-id", "gw-1")
    clear_worker_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway-id"]
    clear_worker_files(tmp_path / "missing")  # nothing to clear is fine


async def test_a_worker_writes_at_start_and_its_last_counts_at_stop(tmp_path: Path) -> None:
    shared = tmp_path / "gateway-id"
    counts = {"requests_total": 1}
    follower = GatewayIdFollower(str(shared), lambda _: None, interval_s=3600,
                                 counters=lambda: counts, ready=lambda: True, key="w1")
    await follower.start()
    try:
        await until((tmp_path / "counters-w1.json").exists, timeout=5)
        assert pod_view(tmp_path, {}).counters == {"requests_total": 1}
        counts = {"requests_total": 4}
    finally:
        await follower.stop()
    view = pod_view(tmp_path, {})
    assert view.counters == {"requests_total": 4}
    assert view.unwell == ("w1: not ready",)  # stopped: it serves no more


async def test_a_worker_that_cannot_write_keeps_serving(tmp_path: Path) -> None:
    blocked = tmp_path / "ro"
    blocked.mkdir()
    os.chmod(blocked, 0o500)
    if os.access(blocked, os.W_OK):  # root writes anywhere: a path under a file cannot be written by anyone
        blocked = tmp_path / "a-file"
        blocked.write_text("x")
    follower = GatewayIdFollower(str(blocked / "gateway-id"), lambda _: None, interval_s=3600,
                                 counters=lambda: {"requests_total": 1})
    await follower.start()
    await follower.report()
    await follower.stop()  # logged, not raised


def _at(directory: Path, key: str) -> float:
    return float(json.loads((directory / f"counters-{key}.json").read_text())["at"])
