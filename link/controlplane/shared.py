"""One registration per pod when Link runs several worker processes.

Only the first process registers and heartbeats. It writes the gateway id the
control plane assigned to a small file; the other workers (started with
``controlplane.gateway_id_file`` and no ``controlplane.url``) watch that file
and stamp their events with the same id.

The heartbeat speaks for the whole pod: each worker writes its request counters
and readiness next to that file (``counters-<pid>.json``, once per poll, off the
loop), and the first process adds them to its own. A worker whose file says it
is not ready, or has not been rewritten for ``STALE_S`` (it died or hangs), or that
never wrote one ``STALE_S`` after the workers started (it died at start-up), makes
the pod's heartbeat ``degraded``. Counters of a worker that died stay counted:
they are requests the pod served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from link.component import cancel_task

__all__ = ["GatewayIdFollower", "PodView", "clear_worker_files", "pod_view", "write_gateway_id", "write_worker_file"]

COUNTERS_PREFIX = "counters-"
STALE_S = 10.0  # a worker rewrites its file every poll (1 s); ten missed polls: dead or hung

_log = logging.getLogger("stoa.link.controlplane")


def write_gateway_id(path: str | Path, gateway_id: str) -> None:
    """Replace the file atomically, so a reader never sees half an id."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(gateway_id + "\n", encoding="utf-8")
    os.replace(tmp, target)


def _worker_file(directory: Path, key: str) -> Path:
    return directory / f"{COUNTERS_PREFIX}{key}.json"


def write_worker_file(directory: str | Path, key: str, counters: Mapping[str, int], ready: bool) -> None:
    """One worker's counters and readiness, replaced atomically (a reader never sees half a file)."""
    target = _worker_file(Path(directory), key)
    tmp = target.with_name(f".{target.name}.tmp")
    body = {"counters": {k: int(v) for k, v in counters.items()}, "ready": ready, "at": time.time()}
    tmp.write_text(json.dumps(body, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, target)


def clear_worker_files(directory: str | Path) -> None:
    """Forget the files of an earlier run (before its workers start: they would be counted again)."""
    with contextlib.suppress(OSError):
        for path in Path(directory).glob(f"{COUNTERS_PREFIX}*.json"):
            with contextlib.suppress(OSError):
                path.unlink()


@dataclass(frozen=True)
class PodView:
    """The first process's counters plus every worker's, and the workers that are not well."""

    counters: dict[str, int]
    workers: int  # worker files read
    unwell: tuple[str, ...]  # "<key>: not ready" / "<key>: silent for 12 s" / "<key>: unreadable"


def pod_view(directory: str | Path, own: Mapping[str, int], *, own_key: str = "",
             now: float | None = None, expected: int = 0, since: float | None = None) -> PodView:
    """Sum ``own`` with the counters the workers wrote next to the gateway id file.

    ``expected`` is how many workers were started (at ``since``): once ``STALE_S`` has passed,
    a worker that never wrote its file (it died at start-up) is unwell too.
    """
    now = time.time() if now is None else now
    total = {k: int(v) for k, v in own.items()}
    unwell: list[str] = []
    seen = 0
    try:
        paths = sorted(Path(directory).glob(f"{COUNTERS_PREFIX}*.json"))
    except OSError:
        paths = []
    for path in paths:
        key = path.name[len(COUNTERS_PREFIX):-len(".json")]
        if key == own_key:
            continue
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            counters, ready, at = body["counters"], body["ready"], float(body["at"])
            values = {str(k): int(v) for k, v in counters.items() if type(v) is int and v >= 0}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            unwell.append(f"{key}: unreadable")
            continue
        seen += 1
        for k, v in values.items():
            total[k] = total.get(k, 0) + v
        if now - at > STALE_S:
            unwell.append(f"{key}: silent for {now - at:.0f} s")
        elif ready is not True:
            unwell.append(f"{key}: not ready")
    files = len(paths) - sum(1 for p in paths if p.name == f"{COUNTERS_PREFIX}{own_key}.json")
    if files < expected and (since is None or now - since > STALE_S):
        missing = expected - files
        unwell.append(f"{missing} worker{'s' if missing > 1 else ''} of {expected} never reported")
    return PodView(total, seen, tuple(unwell))


class GatewayIdFollower:
    """A component that learns the pod's gateway id from the file the registering process writes.

    With ``counters``, it also writes this worker's counters and readiness next to that file at
    every poll (in a thread), for the first process's heartbeat.
    """

    name = "controlplane"

    def __init__(self, path: str, on_gateway_id: Callable[[str], None], *, interval_s: float = 1.0,
                 counters: Callable[[], Mapping[str, int]] | None = None,
                 ready: Callable[[], bool] = lambda: True, key: str | None = None) -> None:
        self._path = Path(path)
        self._on_gateway_id = on_gateway_id
        self._interval_s = interval_s
        self._counters = counters
        self._ready = ready
        self._key = key or str(os.getpid())
        self._task: asyncio.Task[None] | None = None
        self.gateway_id: str | None = None

    async def start(self) -> None:
        self.poll()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stoa-gateway-id-follower")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        await self.report(ready=False)  # stopping: its last counts, and no longer serving

    async def report(self, ready: bool | None = None) -> None:
        """Write this worker's file now (a failure is logged, never raised)."""
        if self._counters is None:
            return
        try:
            counters = dict(self._counters())
            is_ready = self._ready() if ready is None else ready
            await asyncio.to_thread(write_worker_file, self._path.parent, self._key, counters, is_ready)
        except OSError as exc:
            _log.warning("worker counters not written to %s: %s", self._path.parent, exc)

    def readiness(self) -> tuple[bool, str]:
        """Always ready (the control plane is never on the request path)."""
        if self.gateway_id:
            return True, f"worker of gateway {self.gateway_id} (the first process registers)"
        return True, "worker: waiting for the first process to register"

    def poll(self) -> None:
        """Read the file once; a new id is passed on."""
        with contextlib.suppress(OSError):
            found = self._path.read_text(encoding="utf-8").strip()
            if found and found != self.gateway_id:
                self.gateway_id = found
                _log.info("gateway id %s (registered by the first process)", found)
                self._on_gateway_id(found)

    async def _run(self) -> None:
        while True:
            await self.report()
            await asyncio.sleep(self._interval_s)
            self.poll()
