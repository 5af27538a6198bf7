"""Writes what federation learnt about each watched ToolSet's upstream into its status."""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any

from link.registry.kubernetes.status import federation_state, toolset_status_patch
from link.registry.kubernetes.status_writer import StatusWriter
from link.registry.registry import ToolRegistry, ToolSetStatus

__all__ = ["FederationStatusReporter"]


class FederationStatusReporter:
    """Called on every registry change; queues a ToolSet status patch only when its state changed."""

    def __init__(self, registry: ToolRegistry, writer: StatusWriter, namespaces: Collection[str]) -> None:
        self._registry = registry
        self._writer = writer
        self._scopes = set(namespaces)  # empty: the whole cluster
        self._written: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            present: set[tuple[str, str]] = set()
            for ts in self._registry.toolsets():
                if self._scopes and ts.tenant not in self._scopes:
                    continue
                present.add(ts.key)
                status = self._registry.toolset_status(ts.tenant, ts.name)
                if status == ToolSetStatus():
                    continue  # federation has not looked at it yet
                state = federation_state(status)
                if self._written.get(ts.key) != state:
                    self._written[ts.key] = state
                    self._writer.submit("ToolSet", ts.tenant, ts.name, toolset_status_patch(status))
            for key in set(self._written) - present:
                del self._written[key]
