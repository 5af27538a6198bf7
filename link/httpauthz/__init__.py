"""Envoy's HTTP ext_authz (``http_service``) to Link's own lean HTTP/1.1 server: the default decision path.

``wire`` (what Envoy's config and the server agree on) imports nothing heavy, so the Envoy
generator can use it; the server is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from link.httpauthz.server import HttpAuthzServer, bind_sockets

__all__ = ["HttpAuthzServer", "bind_sockets"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from link.httpauthz import server

        return getattr(server, name)
    raise AttributeError(name)
