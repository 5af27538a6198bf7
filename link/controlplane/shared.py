"""One registration per pod when Link runs several worker processes.

Only the first process registers and heartbeats. It writes the gateway id the
control plane assigned to a small file; the other workers (started with
``controlplane.gateway_id_file`` and no ``controlplane.url``) watch that file
and stamp their events with the same id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from link.component import cancel_task

__all__ = ["GatewayIdFollower", "write_gateway_id"]

_log = logging.getLogger("stoa.link.controlplane")


def write_gateway_id(path: str | Path, gateway_id: str) -> None:
    """Replace the file atomically, so a reader never sees half an id."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(gateway_id + "\n", encoding="utf-8")
    os.replace(tmp, target)


class GatewayIdFollower:
    """A component that learns the pod's gateway id from the file the registering process writes."""

    name = "controlplane"

    def __init__(self, path: str, on_gateway_id: Callable[[str], None], *, interval_s: float = 1.0) -> None:
        self._path = Path(path)
        self._on_gateway_id = on_gateway_id
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self.gateway_id: str | None = None

    async def start(self) -> None:
        self.poll()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stoa-gateway-id-follower")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None

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
            await asyncio.sleep(self._interval_s)
            self.poll()
