"""The Kubernetes registry source: the threads of every list/watch loop and the status writer.

For each kind (and each namespace of ``registry.namespaces``, or the whole
cluster when that list is empty) a :class:`~link.registry.kubernetes.watch.Stream`
runs in its own thread; one :class:`~link.registry.kubernetes.status_writer.StatusWriter`
thread writes every verdict back. This module starts and stops them and says
whether the first list is done.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s_client

from link.backoff import Backoff
from link.registry.kubernetes.api import LOGGER, build_api_client
from link.registry.kubernetes.federation import FederationStatusReporter
from link.registry.kubernetes.feeds import Feed, RegistryFeed
from link.registry.kubernetes.imports import KIND, ImportFeed
from link.registry.kubernetes.status_writer import StatusWriter
from link.registry.kubernetes.watch import Stream, Tuning
from link.registry.registry import KINDS, ToolRegistry
from link.settings import RegistrySettings, Settings

__all__ = ["WATCHED_KINDS", "KubernetesSource"]

_log = logging.getLogger(LOGGER)

# The registry's kinds, and OpenAPIImport entries (each stands for Tools).
WATCHED_KINDS = (*KINDS, KIND)
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class KubernetesSource:
    """Feeds a :class:`ToolRegistry` from the Tool/ToolSet custom resources of a cluster.

    ``api_client`` is for tests (a client whose ``Configuration.host`` points
    at a local server); by default the client is built from the in-cluster
    config or ``registry.kubeconfig`` on :meth:`start`.
    """

    name = "registry-kubernetes"

    def __init__(
        self,
        registry: ToolRegistry,
        settings: Settings | RegistrySettings,
        api_client: k8s_client.ApiClient | None = None,
        *,
        write_status: bool = True,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        watch_timeout_s: int = 300,
        idle_timeout_s: float = 90.0,
        request_timeout_s: float = 10.0,
        page_size: int = 500,
        initial_sync_timeout_s: float = 10.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self._registry = registry
        self._settings = settings.registry if isinstance(settings, Settings) else settings
        for ns in self._settings.namespaces:
            if not _NAMESPACE.match(ns):
                raise ValueError(f"registry.namespaces: {ns!r} is not a valid namespace name")
        Backoff(backoff_initial_s, backoff_max_s)  # refuse nonsense bounds here, not in a thread
        self._api_client = api_client
        self._own_client = api_client is None
        self._write_status = write_status
        # Bookmarks come about once a minute; a longer silence means a dead connection.
        self._tuning = Tuning(backoff_initial_s, backoff_max_s, watch_timeout_s, idle_timeout_s,
                               request_timeout_s, page_size)
        self._initial_sync_timeout_s = initial_sync_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._stopping = threading.Event()
        self._streams: list[Stream] = []
        self._writer: StatusWriter | None = None
        self._started = False
        self._synced = threading.Event()
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def namespaces(self) -> list[str | None]:
        """The scopes watched: each configured namespace, or None for the whole cluster."""
        return list(self._settings.namespaces) or [None]

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        """Start the list/watch threads; wait (bounded) for the first list of each."""
        if self._started:
            return
        streams = len(WATCHED_KINDS) * len(self.namespaces)
        if self._api_client is None:
            self._api_client = await asyncio.to_thread(
                build_api_client, self._settings, pool_size=streams + 2)
        api = k8s_client.CustomObjectsApi(self._api_client)
        self._stopping.clear()
        if self._write_status:
            self._writer = StatusWriter(api, self._stopping, self._tuning.request_timeout_s)
            self._writer.thread.start()
        feeds: dict[str, Feed] = {kind: RegistryFeed(self._registry, kind) for kind in KINDS}
        feeds[KIND] = ImportFeed(self._registry)  # one per source: shared by every namespace's loop
        self._streams = [
            Stream(feeds[kind], ns, api, self._writer, self._stopping, self._tuning)
            for ns in self.namespaces for kind in WATCHED_KINDS
        ]
        self._synced.clear()
        if self._writer is not None:
            reporter = FederationStatusReporter(self._registry, self._writer, self._settings.namespaces)
            self._unsubscribe = self._registry.subscribe(reporter)
        for s in self._streams:
            s.on_listed = self._check_synced
            s.start()
        self._started = True
        await asyncio.to_thread(self._synced.wait, self._initial_sync_timeout_s)
        if not self.synced():
            _log.warning("registry not loaded from Kubernetes yet: %s", self.readiness()[1])

    async def stop(self) -> None:
        """Stop every thread (bounded by ``stop_timeout_s``); watches in progress are cut."""
        if not self._started:
            return
        self._stopping.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._writer is not None:
            self._writer.wake()
        await asyncio.to_thread(self._join, time.monotonic() + self._stop_timeout_s)
        if self._own_client and self._api_client is not None:
            self._api_client.close()  # type: ignore[no-untyped-call]
            self._api_client = None
        self._started = False

    def _join(self, deadline: float) -> None:
        threads = [s.thread for s in self._streams if s.thread is not None]
        if self._writer is not None:
            threads.append(self._writer.thread)
        while time.monotonic() < deadline and any(t.is_alive() for t in threads):
            # A watch may only just have connected when stop() came: abort until every thread is out.
            for s in self._streams:
                s.abort()
            for t in threads:
                t.join(0.05)
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            _log.warning("threads still running after stop: %s", ", ".join(alive))

    def _check_synced(self) -> None:
        if self.synced():
            self._synced.set()

    def threads_alive(self) -> list[str]:
        """Names of this source's threads still running (empty after a clean stop)."""
        threads = [s.thread for s in self._streams if s.thread is not None]
        if self._writer is not None:
            threads.append(self._writer.thread)
        return [t.name for t in threads if t.is_alive()]

    # -- state ----------------------------------------------------------------
    def synced(self) -> bool:
        """True once every kind in every watched namespace was listed at least once."""
        return bool(self._streams) and all(s.state.listed for s in self._streams)

    def status_writes_pending(self) -> bool:
        """True while status patches wait to be written."""
        return self._writer is not None and not self._writer.idle()

    def resource_versions(self) -> dict[str, str | None]:
        """The last resourceVersion each stream saw (a list, an event or a bookmark), by stream."""
        return {s.label: s.state.resource_version for s in self._streams}

    def describe(self) -> dict[str, dict[str, Any]]:
        """Each stream's state, for admin pages and debugging: phase, resourceVersion, lists, last error."""
        return {
            s.label: {"phase": s.state.phase, "resourceVersion": s.state.resource_version,
                      "lists": s.state.lists, "lastError": s.state.last_error}
            for s in self._streams
        }

    def readiness(self) -> tuple[bool, str]:
        if not self._streams:
            return False, "not started"
        troubles = [f"{s.label}: {s.state.last_error}" for s in self._streams if s.state.last_error]
        if not self.synced():
            waiting = ", ".join(s.label for s in self._streams if not s.state.listed)
            detail = f"waiting for the first list of {waiting}"
            return False, detail + ("; " + "; ".join(troubles) if troubles else "")
        counts = self._registry.counts()
        detail = f"{counts['tools']} tools, {counts['toolsets']} toolsets, {counts['errors']} refused"
        if troubles:
            detail += "; last errors: " + "; ".join(troubles)
        return True, detail
