"""Change notifications for resources and prompts.

After a registry change of the Resource or Prompt entries (debounced, on the
server's loop):

- ``notifications/resources/list_changed`` / ``notifications/prompts/list_changed``
  go to every tracked handshake-era connection and, as ``ResourcesListChanged``
  / ``PromptsListChanged``, to 2026-07-28 ``subscriptions/listen`` streams;
- ``notifications/resources/updated`` goes to each connection subscribed
  (``resources/subscribe``) to a URI whose entry changed or disappeared, and
  ``ResourceUpdated`` for each changed fixed URI to listen streams.

A subscription remembers the entry (tenant, name) that served the URI for that
caller when it subscribed, so an update of another tenant's entry with the same
URI never reaches it. A federated resource's entry is the ToolSet serving it
(:func:`toolset_key`): Link subscribes upstream for its clients, and the
upstream's ``notifications/resources/updated`` goes to the connections watching
that URI of that set (:meth:`ContentNotifier.federated_updated`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any

from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
)

from link.registry import Resource, ToolRegistry

__all__ = ["ContentNotifier", "toolset_key", "toolset_of"]

_log = logging.getLogger("stoa.mcp.notify")
MAX_SUBSCRIPTIONS_PER_CONNECTION = 1000
_TOOLSET = "ToolSet/"  # no Resource is named so: a registry name has no "/"


def toolset_key(tenant: str, toolset: str) -> tuple[str, str]:
    """The entry key of a resource federated by ``toolset`` (a subscription watches the set)."""
    return (tenant, _TOOLSET + toolset)


def toolset_of(key: tuple[str, str]) -> str | None:
    """The ToolSet of a :func:`toolset_key`, None for a Resource entry's key."""
    return key[1][len(_TOOLSET):] if key[1].startswith(_TOOLSET) else None


class ContentNotifier:
    """Tracks resource subscriptions and fans out list_changed / updated notifications."""

    name = "mcp-content-changed"

    def __init__(self, registry: ToolRegistry, bus: InMemorySubscriptionBus, debounce_s: float = 0.05) -> None:
        self._registry = registry
        self._bus = bus
        self._debounce = debounce_s
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        # connection -> uri -> (tenant, name) of the entry it watches
        self._subs: weakref.WeakKeyDictionary[Any, dict[str, tuple[str, str]]] = weakref.WeakKeyDictionary()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: asyncio.Task[None] | None = None
        self._unsubscribe: Any = None
        self._versions = self._current_versions()
        self._snapshot = self._entries()
        self.sent = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._versions = self._current_versions()
        self._snapshot = self._entries()
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

    # -- connections and subscriptions ----------------------------------------------------
    def track(self, connection: Any) -> None:
        if connection is not None:
            self._connections.add(connection)

    def subscribe(self, connection: Any, uri: str, key: tuple[str, str]) -> bool:
        """Remember that ``connection`` watches ``uri`` (served by the entry ``key``); False when over the cap."""
        if connection is None:
            return True  # 2026-07-28: subscriptions travel on subscriptions/listen
        self.track(connection)
        subs = self._subs.setdefault(connection, {})
        if uri not in subs and len(subs) >= MAX_SUBSCRIPTIONS_PER_CONNECTION:
            return False
        subs[uri] = key
        return True

    def unsubscribe(self, connection: Any, uri: str) -> tuple[str, str] | None:
        """Forget ``connection``'s subscription to ``uri``; the entry key it watched, if any."""
        if connection is None:
            return None
        return self._subs.get(connection, {}).pop(uri, None)

    def watched(self, uri: str, key: tuple[str, str]) -> bool:
        """Whether some connection still watches ``uri`` of the entry ``key``."""
        return any(subs.get(uri) == key for subs in list(self._subs.values()))

    async def federated_updated(self, tenant: str, toolset: str, uri: str) -> None:
        """A federated upstream's ``notifications/resources/updated``: to the connections watching it."""
        key = toolset_key(tenant, toolset)
        for connection, subs in list(self._subs.items()):
            if subs.get(uri) == key:
                try:
                    await connection.send_resource_updated(uri)
                except Exception:  # advisory: a broken stream must not stop the others
                    _log.debug("resources/updated not delivered", exc_info=True)

    def subscriptions(self, connection: Any) -> dict[str, tuple[str, str]]:
        return dict(self._subs.get(connection, {}))

    # -- fan-out ----------------------------------------------------------------------------
    def _current_versions(self) -> tuple[int, int]:
        return (self._registry.content_version("Resource"), self._registry.content_version("Prompt"))

    def _entries(self) -> dict[tuple[str, str], Resource]:
        return {r.key: r for r in self._registry.all_resources()}

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
            self._pending = asyncio.get_running_loop().create_task(self._fan_out(), name="mcp-content-changed")

    async def _fan_out(self) -> None:
        await asyncio.sleep(self._debounce)
        await self.notify_now()

    async def notify_now(self) -> None:
        versions = self._current_versions()
        resources_changed = versions[0] != self._versions[0]
        prompts_changed = versions[1] != self._versions[1]
        self._versions = versions
        if not resources_changed and not prompts_changed:
            return
        for connection in list(self._connections):
            try:
                if resources_changed:
                    await connection.send_resource_list_changed()
                if prompts_changed:
                    await connection.send_prompt_list_changed()
            except Exception:  # advisory: a broken stream must not stop the others
                _log.debug("list_changed not delivered", exc_info=True)
        if resources_changed:
            await self._bus.publish(ResourcesListChanged())
            await self._updated()
        if prompts_changed:
            await self._bus.publish(PromptsListChanged())
        self.sent += 1

    async def _updated(self) -> None:
        before, after = self._snapshot, self._entries()
        self._snapshot = after
        # Entries are immutable: a new object under a key is a change (removal and creation too).
        changed = {k for k in set(before) | set(after) if before.get(k) is not after.get(k)}
        if not changed:
            return
        for connection, subs in list(self._subs.items()):
            for uri, key in list(subs.items()):
                if key in changed:
                    try:
                        await connection.send_resource_updated(uri)
                    except Exception:
                        _log.debug("resources/updated not delivered", exc_info=True)
        for key in sorted(changed):
            entry = after.get(key) or before.get(key)
            if entry is not None and not entry.is_template:
                await self._bus.publish(ResourceUpdated(uri=entry.uri))
