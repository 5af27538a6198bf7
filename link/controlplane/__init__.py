"""Registration and heartbeat with the STOA control plane (ADR-057).

``install(app)`` adds a :class:`ControlPlaneClient` as a component when
``controlplane.url`` is set; with no URL the client is off and readiness says so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from link.controlplane.client import ControlPlaneClient, RegistrationState
from link.controlplane.counters import request_counters
from link.controlplane.registration import (
    enabled_features,
    gateway_mode,
    instance_name,
    read_gateway_key,
    registration_body,
)
from link.controlplane.shared import GatewayIdFollower, pod_view, write_gateway_id

if TYPE_CHECKING:
    from link.app import LinkApp

_log = logging.getLogger("stoa.link.controlplane")

__all__ = [
    "ControlPlaneClient",
    "GatewayIdFollower",
    "RegistrationState",
    "enabled_features",
    "gateway_mode",
    "install",
    "instance_name",
    "read_gateway_key",
    "registration_body",
    "request_counters",
]


def install(app: LinkApp) -> None:
    """Add the control-plane client to the app (a background component; never blocks traffic)."""
    cp = app.settings.controlplane
    if not cp.url:
        if cp.gateway_id_file:
            # A worker process: the first process of the pod registers; follow the id it got.
            # Its counters and readiness go next to the file, for the first process's heartbeat.
            app.add_component(GatewayIdFollower(cp.gateway_id_file, app.set_gateway_id,
                                                counters=request_counters, ready=lambda: app.readiness()[0]))
            return
        app.ready_checks["controlplane"] = lambda: (True, "off (controlplane.url is not set)")
        return
    shared_dir: str | None = None
    spawned = max(0, app.settings.server.workers - 1)  # `serve` starts workers 1..N-1 beside this one
    if cp.gateway_id_file:
        shared = cp.gateway_id_file
        shared_dir = os.path.dirname(shared) or "."
        app.on_gateway_id(lambda gateway_id: write_gateway_id(shared, gateway_id))

    def status() -> str:
        # The heartbeat reports what /health/ready says (our own line there is always ready), and
        # for the whole pod: a worker not ready, or silent, makes it degraded.
        ready, _ = app.readiness()
        if ready and shared_dir is not None:
            unwell = pod_view(shared_dir, {}, expected=spawned, since=app.started_at).unwell
            if unwell:
                _log.warning("heartbeat: degraded, workers not well: %s", "; ".join(unwell))
                ready = False
        return "healthy" if ready else "degraded"

    def counters() -> Mapping[str, int]:
        # This process's counters plus what each worker last wrote: the pod's requests, not one process's.
        own = request_counters()
        return own if shared_dir is None else pod_view(shared_dir, own).counters

    # Events name the gateway by the id the control plane assigned (the instance name until then).
    client = ControlPlaneClient(app.settings, status=status, counters=counters, started_at=app.started_at,
                                on_registered=app.set_gateway_id)
    app.add_component(client)
    app.extras["controlplane"] = client
