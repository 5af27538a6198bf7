"""Link's HTTP decision server: the listening sockets, the shared state, the graceful stop.

Several worker processes share the same listening sockets: the first process
binds them and its children inherit the file descriptors (``LINK_INHERITED_HTTP_FDS``),
so Envoy's one cluster endpoint (a Unix socket or a loopback port) spreads its
many HTTP/1.1 connections over every process the kernel wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from link.httpauthz.protocol import Limits, ServerState, protocol_factory
from link.httpauthz.shell import HttpAuthorizationShell
from link.listen import bind_tcp
from link.settings import ConfigError, Settings

if TYPE_CHECKING:
    from link.app import LinkApp

_log = logging.getLogger("stoa.link.httpauthz")

# Not under STOA_: those are settings, and an unknown one stops start-up.
INHERITED_FDS_ENV = "LINK_INHERITED_HTTP_FDS"


def limits_of(settings: Settings) -> Limits:
    s = settings.server
    # Envoy sends at most the largest body a route buffers; a little more is refused here too.
    body = max(settings.contracts.max_body_bytes, settings.envoy.max_request_body_bytes)
    return Limits(max_header_bytes=s.http_max_header_bytes, max_body_bytes=body,
                  header_timeout_s=s.http_header_timeout_s, idle_timeout_s=s.http_idle_timeout_s)


def bind_sockets(settings: Settings) -> list[socket.socket]:
    """The listening socket of the HTTP decision server: the Unix socket if set, else TCP ``http_address``."""
    s = settings.server
    if s.http_uds:
        path = Path(s.http_uds)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()  # a stale socket from a previous run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
        except OSError as exc:
            sock.close()
            raise ConfigError("server.http_uds", f"cannot listen on unix:{path}: {exc.strerror or exc}") from None
    else:
        sock = bind_tcp(s.http_address, "server.http_address")
    out = [sock]
    # Not listening yet: each process listens when its server starts, so no check waits in a backlog
    # while Link is still starting (Envoy gets a refused connection, its status_on_error).
    for sock in out:
        sock.setblocking(False)
        sock.set_inheritable(True)
    return out


def inherited_sockets() -> list[socket.socket] | None:
    """The sockets a parent process bound for this worker, if any."""
    raw = os.environ.get(INHERITED_FDS_ENV, "")
    if not raw:
        return None
    socks = []
    for fd in raw.split(","):
        sock = socket.socket(fileno=int(fd))
        sock.setblocking(False)
        socks.append(sock)
    return socks


def _address_of(sock: socket.socket) -> str:
    """The address in the form the Envoy generator takes: host:port or unix:/path."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    host = f"[{name[0]}]" if sock.family == socket.AF_INET6 else name[0]
    return f"{host}:{name[1]}"


class HttpAuthzServer:
    """Serves Envoy's HTTP ext_authz checks until stopped."""

    def __init__(self, app: LinkApp, sockets: list[socket.socket] | None = None) -> None:
        self.app = app
        s = app.settings
        shell = HttpAuthorizationShell(app.pipeline, lambda: app.exchange_sink,
                                       body_cap=s.snapshots.body_excerpt_bytes, trace_context=False)
        self.state = ServerState(shell.decide, limits_of(s), s.server.http_max_connections)
        inherited = inherited_sockets() if sockets is None else None
        self._sockets = sockets if sockets is not None else inherited or bind_sockets(s)
        self.addresses = [_address_of(sock) for sock in self._sockets]
        # The process that bound a Unix socket removes it on the way out; workers that inherited it do not.
        self._owned_paths = [] if inherited else [a[len("unix:"):] for a in self.addresses if a.startswith("unix:")]
        self._servers: list[asyncio.base_events.Server] = []

    @property
    def port(self) -> int:
        """The TCP port (useful when bound to port 0); 0 on a Unix socket."""
        for address in self.addresses:
            if not address.startswith("unix:"):
                return int(address.rpartition(":")[2])
        return 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        factory = protocol_factory(self.state)
        for sock in self._sockets:
            self._servers.append(await loop.create_server(factory, sock=sock, backlog=1024))

    async def stop(self, grace: float) -> None:
        """Stop accepting, answer what is in flight (within ``grace`` seconds), then close the rest."""
        all_closed = self.state.drain()
        for server in self._servers:
            server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_closed.wait(), timeout=grace)
        for conn in list(self.state.connections):
            conn.abort()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=1)
        for path in self._owned_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
