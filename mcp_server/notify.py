"""Telling connected clients that the tool list changed.

Handshake-era clients (2025-06-18, 2025-11-25) get
``notifications/tools/list_changed`` on their connection's standalone stream
(the Streamable HTTP GET stream, or the legacy SSE stream). 2026-07-28
clients have no standing stream; they open ``subscriptions/listen`` and get
the event there, through the SDK's subscription bus.

Registry changes may arrive from a source's worker thread and in bursts (a
re-list, a directory reload); they are moved onto the server's loop and
coalesced into one notification per ``debounce_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any

from mcp.server.subscriptions import InMemorySubscriptionBus, ToolsListChanged

from link.registry import ToolRegistry
from mcp_server.metrics import SESSIONS

__all__ = ["ListChangedNotifier"]

_log = logging.getLogger("stoa.mcp.notify")


class ListChangedNotifier:
    """Tracks live MCP connections and notifies them after registry changes."""

    name = "mcp-list-changed"

    def __init__(
        self, registry: ToolRegistry, bus: InMemorySubscriptionBus, debounce_s: float = 0.05
    ) -> None:
        self._registry = registry
        self.bus = bus
        self._debounce = debounce_s
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: asyncio.Task[None] | None = None
        self._unsubscribe: Any = None
        self.sent = 0  # notifications fanned out (for tests and the admin view)
        self._notified_version = registry.version

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._unsubscribe = self._registry.subscribe(self._on_change)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pending
        self._loop = None

    def readiness(self) -> tuple[bool, str]:
        return True, f"{len(self._connections)} connections"

    # -- connections ----------------------------------------------------------------
    def track(self, connection: Any) -> None:
        """Remember a handshake-era connection (weakly: a finished one just disappears)."""
        if connection is None or connection in self._connections:
            return
        self._connections.add(connection)
        SESSIONS.set(len(self._connections))
        exit_stack = getattr(connection, "exit_stack", None)
        if exit_stack is not None:
            exit_stack.callback(self._forget, connection)

    def _forget(self, connection: Any) -> None:
        self._connections.discard(connection)
        SESSIONS.set(len(self._connections))

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # -- change fan-out -----------------------------------------------------------------
    def _on_change(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._schedule()
        else:
            loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.get_running_loop().create_task(self._fan_out(), name="mcp-list-changed")

    async def _fan_out(self) -> None:
        await asyncio.sleep(self._debounce)
        if self._registry.version == self._notified_version:
            return  # a change of resources or prompts only (see mcp_server.content_notify)
        await self.notify_now()

    async def notify_now(self) -> None:
        """Send the notification to every tracked connection and listen stream."""
        for connection in list(self._connections):
            try:
                await connection.send_tool_list_changed()
            except Exception:  # advisory: a broken stream must not stop the others
                _log.debug("list_changed not delivered", exc_info=True)
        await self.bus.publish(ToolsListChanged())
        self._notified_version = self._registry.version
        self.sent += 1
