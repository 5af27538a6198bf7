"""Host and Origin checks against DNS rebinding (MCP transport security).

A browser tricked into sending requests to a local MCP server carries the
attacker's Host (after DNS rebinding) or Origin; both are checked against
``mcp.allowed_hosts`` / ``mcp.allowed_origins`` before anything else runs.
Patterns end in ``:*`` for any port; ``*`` alone allows everything (for
deployments behind a proxy that checks hosts itself).

Origins: MCP clients that are not browsers send no ``Origin``; every browser
request does (fetch POSTs, EventSource with CORS). So the default list is
empty: a present ``Origin`` must be configured, compared exactly after
lower-casing (``null``, ``file://``, other ports, ``localhost.`` and IPv6
loopback are all different origins), or be this server's own origin
(same-origin: ``{scheme}://{Host}`` with the port the server listens on),
which is trusted only while Host itself is checked: DNS rebinding makes an
attacker's page same-origin with the attacker's Host name, and that Host is
refused first. Any other local web app on ``127.0.0.1:*`` used to be let in;
it is not any more.

DNS rebinding targets servers on loopback. A server bound to another address
(in a cluster, reached by service names) with ``allowed_hosts`` left at its
loopback default checks Origin only, like the SDK's own transports.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["LOOPBACK_HOSTS", "HostOriginGuard", "host_check_needed", "matches", "origin_allowed"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def host_check_needed(bind_host: str, allowed_hosts: Sequence[str], default_hosts: Sequence[str]) -> bool:
    """Check Host unless bound off loopback with the loopback-only default list."""
    return bind_host in LOOPBACK_HOSTS or list(allowed_hosts) != list(default_hosts)


def matches(value: str, patterns: Sequence[str]) -> bool:
    """True when ``value`` equals a pattern, or a ``base:*`` pattern with any port."""
    for pattern in patterns:
        if pattern == "*" or value == pattern:
            return True
        if pattern.endswith(":*"):
            base = pattern[:-2]
            if value.startswith(base + ":") and value[len(base) + 1:].isdigit():
                return True
    return False


def origin_allowed(origin: str, patterns: Sequence[str]) -> bool:
    """An ``Origin`` value against the configured origins (scheme and host are case-insensitive)."""
    return matches(origin.strip().lower(), [p.lower() for p in patterns])


def _same_origin(origin: str, scope: Scope, host: str | None) -> bool:
    """The request comes from a page of this very server (its scheme, Host and listening port)."""
    server = scope.get("server")
    if host is None or not server or not server[1]:
        return False
    name, sep, port = host.rpartition(":")
    if not sep or not name or not port.isdigit() or int(port) != int(server[1]):
        return False
    return origin.strip().lower() == f"{scope.get('scheme', 'http')}://{host}".lower()


class HostOriginGuard:
    """ASGI middleware: 421 for a foreign Host, 403 for a foreign Origin."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str], allowed_origins: Sequence[str],
                 enabled: bool = True, check_hosts: bool = True) -> None:
        self.app = app
        self._hosts = tuple(allowed_hosts)
        self._origins = tuple(allowed_origins)
        self._enabled = enabled
        self._check_hosts = check_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._enabled:
            await self.app(scope, receive, send)
            return
        host = origin = None
        for k, v in scope["headers"]:
            if k == b"host":
                host = v.decode("latin-1")
            elif k == b"origin":
                origin = v.decode("latin-1")
        if self._check_hosts and (host is None or not (matches(host, self._hosts)
                                                       or matches(host + ":80", self._hosts))):
            await _refuse(send, 421, "invalid Host header")
            return
        # Origin is absent on non-browser requests; a present one must be ours.
        if origin is not None and not origin_allowed(origin, self._origins) \
                and not (self._check_hosts and _same_origin(origin, scope, host)):
            await _refuse(send, 403, "invalid Origin header")
            return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
