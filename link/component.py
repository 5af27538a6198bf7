"""The lifecycle every background part of Link follows."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Component(Protocol):
    """Something with a background life: sinks, watchers, clients."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def readiness(self) -> tuple[bool, str]: ...


async def cancel_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel a component's background task and wait for it to finish (None is fine)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
