"""What this instance tells the control plane about itself (ADR-057 register body)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import link
from link.settings import ControlPlaneSettings, Settings


class GatewayKeyError(Exception):
    """The gateway key file is configured but cannot be read."""


def gateway_mode(settings: Settings) -> str:
    """The contract's ``gateway_mode`` enum (``edge_mcp | sidecar | connect``)."""
    return "edge_mcp" if settings.mode == "edge-mcp" else "sidecar"


def instance_name(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """A name stable across restarts: configured, else the pod name, else the hostname.

    A pod of a Deployment keeps its name for its whole life, and a StatefulSet's
    pod keeps it across restarts, which is what the console groups instances by.
    """
    env = os.environ if env is None else env
    return settings.controlplane.instance_name or env.get("POD_NAME") or socket.gethostname()


def enabled_features(settings: Settings) -> list[str]:
    """The features this instance actually runs, in a stable order."""
    flags = {
        # MCP is served by `serve` in sidecar mode and by `mcp` in edge-mcp mode, never by proxy or shadow.
        "mcp": settings.mcp.enabled and settings.mode in ("sidecar", "edge-mcp"),
        "policies": settings.policy.enabled,
        "metering": settings.metering.enabled,
        "ratelimit": settings.ratelimit.enabled,
        "snapshots": settings.snapshots.enabled,
        "tracing": settings.tracing.enabled,
    }
    return [name for name, on in flags.items() if on]


def registration_body(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON body of ``POST /v1/internal/gateways/register``."""
    return {
        "instance_name": instance_name(settings, env),
        "gateway_mode": gateway_mode(settings),
        "version": link.__version__,
        "features": enabled_features(settings),
        "environment": settings.controlplane.environment,
    }


def read_gateway_key(cp: ControlPlaneSettings) -> str | None:
    """The ``X-Gateway-Key`` value: the mounted Secret file wins over the inline key.

    The file is read again on every registration so a rotated Secret is picked
    up without a restart.
    """
    if cp.gateway_key_file:
        try:
            key = Path(cp.gateway_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise GatewayKeyError(
                f"controlplane.gateway_key_file {cp.gateway_key_file}: {exc.strerror or exc}"
            ) from None
        if not key:
            raise GatewayKeyError(f"controlplane.gateway_key_file {cp.gateway_key_file} is empty")
        return key
    return cp.gateway_key or None
