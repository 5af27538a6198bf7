"""Registration and heartbeat with the STOA control plane (ADR-057).

``install(app)`` adds a :class:`ControlPlaneClient` as a component when
``controlplane.url`` is set; with no URL the client is off and readiness says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from link.controlplane.backoff import Backoff
from link.controlplane.client import ControlPlaneClient, RegistrationState
from link.controlplane.counters import request_counters
from link.controlplane.registration import (
    enabled_features,
    gateway_mode,
    instance_name,
    read_gateway_key,
    registration_body,
)

if TYPE_CHECKING:
    from link.app import LinkApp

__all__ = [
    "Backoff",
    "ControlPlaneClient",
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
    if not app.settings.controlplane.url:
        app.ready_checks["controlplane"] = lambda: (True, "off (controlplane.url is not set)")
        return

    def status() -> str:
        # The heartbeat reports what /health/ready says (our own line there is always ready).
        ready, _ = app.readiness()
        return "healthy" if ready else "degraded"

    def registered(gateway_id: str) -> None:
        # Events name the gateway by the id the control plane assigned (the instance name until then).
        metering = app.extras.get("metering")
        if metering is not None:
            metering.set_gateway_id(gateway_id)

    client = ControlPlaneClient(app.settings, status=status, started_at=app.started_at, on_registered=registered)
    app.add_component(client)
    app.extras["controlplane"] = client
