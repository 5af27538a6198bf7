"""telemetry (placeholder until its issue lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from link.app import LinkApp


def install(app: LinkApp) -> None:
    """Add this package's components, sinks, observers and admin routes to the app."""
    return None
