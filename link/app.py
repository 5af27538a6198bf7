"""The Link runtime: one object that owns the pipeline, the sinks and the background parts.

Packages plug themselves in through ``install(app)`` (see ``_PLUGINS``): they add
components (things with start/stop/readiness), outcome sinks, an exchange sink
for error snapshots, decision observers and admin HTTP routes. The transports
(`link.grpc`, `link.admin`, `mcp_server`) only talk to this object.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Callable
from typing import Any

from link.component import Component
from link.events import ExchangeSink, OutcomeBus, OutcomeSink
from link.pipeline import Pipeline, build_pipeline
from link.settings import Settings

_log = logging.getLogger("stoa.link")

# Each module exposes install(app). Order matters only for start-up: the registry first.
_PLUGINS = (
    "link.registry",
    "link.telemetry",
    "link.metering",
    "link.snapshots",
    "link.controlplane",
    "link.kubeevents",
)


class LinkApp:
    """Everything one Link process runs, built from one Settings object."""

    def __init__(self, settings: Settings, *, plugins: tuple[str, ...] = _PLUGINS) -> None:
        self.settings = settings
        self.started_at = time.time()
        self.bus = OutcomeBus()
        self.pipeline: Pipeline = build_pipeline(settings)
        self.components: list[Component] = []
        self.exchange_sink: ExchangeSink | None = None
        self.admin_routes: list[Any] = []  # starlette routes added to the admin server
        self.ready_checks: dict[str, Any] = {}  # name -> callable returning (ok, detail)
        self.extras: dict[str, Any] = {}  # named handles plug-ins share (e.g. "registry")
        self.draining = False
        # The id the control plane assigned (None until registered); sinks that stamp events follow it.
        self.gateway_id: str | None = None
        self._gateway_id_listeners: list[Callable[[str], None]] = []
        for name in plugins:
            importlib.import_module(name).install(self)

    # -- plug-in API -------------------------------------------------------
    def add_component(self, component: Component) -> None:
        self.components.append(component)

    def add_outcome_sink(self, sink: OutcomeSink) -> None:
        self.bus.add(sink)

    def set_exchange_sink(self, sink: ExchangeSink) -> None:
        self.exchange_sink = sink

    def on_gateway_id(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(gateway_id)`` whenever the control plane assigns this process's gateway id."""
        self._gateway_id_listeners.append(listener)

    def set_gateway_id(self, gateway_id: str) -> None:
        """Record the control plane's id for this pod and tell every listener (metering, snapshots…)."""
        self.gateway_id = gateway_id
        for listener in self._gateway_id_listeners:
            try:
                listener(gateway_id)
            except Exception:
                _log.exception("gateway id listener failed")

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        # Phases with background work (key refresh, policy reload) implement Component too.
        for phase in self.pipeline.phases:
            if isinstance(phase, Component):
                self.components.insert(0, phase)
        for c in self.components:
            await c.start()
            _log.info("started %s", c.name)

    async def stop(self) -> None:
        for c in reversed(self.components):
            try:
                await asyncio.wait_for(c.stop(), timeout=self.settings.server.shutdown_grace_s + 5)
            except Exception:
                _log.exception("stopping %s failed", c.name)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every phase and component says so (and we are not draining)."""
        details: dict[str, Any] = {}
        ok = not self.draining
        if self.draining:
            details["draining"] = True
        for name, (good, detail) in self.pipeline.readiness().items():
            details[name] = {"ready": good, "detail": detail}
            ok = ok and good
        for c in self.components:
            good, detail = c.readiness()
            details[c.name] = {"ready": good, "detail": detail}
            ok = ok and good
        for name, check in self.ready_checks.items():
            good, detail = check()
            details[name] = {"ready": good, "detail": detail}
            ok = ok and good
        return ok, details
