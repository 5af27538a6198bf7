"""Run one Link process: the app, its gRPC server, its admin server and (in sidecar mode) the MCP
server, all in one event loop, with a graceful stop.

One process per pod means one control-plane registration, one heartbeat, one
metering spool and one ``/metrics`` for the decision service and MCP alike
(ADR 0010). Every listening address is taken before anything starts, so a busy
port stops start-up with a sentence instead of a half-started process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING

import uvicorn

from link.admin import admin_server
from link.app import LinkApp
from link.grpc.server import GrpcServer
from link.heap import freeze_start_up_heap
from link.httpauthz import HttpAuthzServer
from link.listen import bind_tcp, check_free, split_address
from link.settings import Settings

if TYPE_CHECKING:
    from mcp_server.embedded import EmbeddedMcpServer

_log = logging.getLogger("stoa.link")


def serves_mcp(settings: Settings) -> bool:
    """Whether ``stoa-link serve`` also serves MCP: sidecar mode, unless ``mcp.enabled`` is false."""
    return settings.mode == "sidecar" and settings.mcp.enabled


class LinkRuntime:
    """Start/stop a whole Link process inside the current event loop."""

    def __init__(self, settings: Settings, http_sockets: list[socket.socket] | None = None) -> None:
        self.settings = settings
        self.app = LinkApp(settings)
        self.grpc: GrpcServer | None = None
        self.http: HttpAuthzServer | None = None
        self._http_sockets = http_sockets
        self.mcp: EmbeddedMcpServer | None = None
        self._admin_task: asyncio.Task[None] | None = None
        self._admin: uvicorn.Server | None = None
        self._admin_socket: socket.socket | None = None
        self._app_started = False
        self.admin_port = 0

    @property
    def grpc_port(self) -> int:
        assert self.grpc is not None
        return self.grpc.port

    def _bind(self) -> None:
        """Take (or check) every port first: a busy one fails here, before any part starts."""
        s = self.settings.server
        check_free(s.grpc_address, "server.grpc_address")
        self._admin_socket = bind_tcp(s.admin_address, "server.admin_address")
        self.admin_port = int(self._admin_socket.getsockname()[1])
        if s.authz_transport == "http" and self._http_sockets is None:
            from link.httpauthz.server import bind_sockets, inherited_sockets

            self._http_sockets = inherited_sockets() or bind_sockets(self.settings)
        if serves_mcp(self.settings):
            from mcp_server.embedded import EmbeddedMcpServer  # the MCP SDK loads only when MCP is served

            self.mcp = EmbeddedMcpServer(self.settings, self.app)
            self.mcp.bind()

    async def start(self) -> None:
        try:
            self._bind()
            self._app_started = True  # from here on, whatever started is stopped on failure
            await self.app.start()
            self.grpc = GrpcServer(self.app)
            await self.grpc.start()
            if self._http_sockets is not None:
                # The gRPC server stays: it takes the access-log stream and ext_proc either way.
                self.http = HttpAuthzServer(self.app, self._http_sockets)
                await self.http.start()
            await self._start_admin()
            if self.mcp is not None:
                await self.mcp.start()
        except BaseException:
            await self.stop()
            raise
        host, _ = split_address(self.settings.server.admin_address)
        _log.info(
            "STOA Link serving gRPC on %s (port %d)%s, %sadmin on %s:%d%s",
            self.settings.server.grpc_address, self.grpc.port,
            f" and unix:{self.settings.server.grpc_uds}" if self.settings.server.grpc_uds else "",
            f"HTTP decisions on {', '.join(self.http.addresses)}, " if self.http else "",
            host, self.admin_port,
            f", MCP on {self.mcp.url}" if self.mcp is not None else "",
        )

    async def _start_admin(self) -> None:
        assert self._admin_socket is not None
        host, _ = split_address(self.settings.server.admin_address)
        self._admin = admin_server(self.app, host, self.admin_port)
        self._admin_task = asyncio.create_task(self._admin.serve(sockets=[self._admin_socket]),
                                               name="admin-server")
        for _ in range(500):
            if self._admin.started:
                return
            if self._admin_task.done():
                self._admin_task.result()
                break
            await asyncio.sleep(0.01)
        raise RuntimeError(f"admin server failed to start on {self.settings.server.admin_address}")

    async def wait(self) -> None:
        """Until a server ends by itself (the MCP or admin server failing); normally never."""
        tasks = [t for t in (self._admin_task,) if t is not None]
        if self.mcp is not None:
            tasks.append(asyncio.ensure_future(self.mcp.wait()))
        if tasks:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.Event().wait()

    async def stop(self) -> None:
        """Health NOT_SERVING first, in-flight calls (checks and MCP calls) finish, then everything stops."""
        self.app.draining = True
        drains = []
        if self.http is not None:
            drains.append(self.http.stop(self.settings.server.shutdown_grace_s))
        if self.grpc is not None:
            drains.append(self.grpc.stop(self.settings.server.shutdown_grace_s))
        if self.mcp is not None:
            drains.append(self.mcp.stop())
        await asyncio.gather(*drains, return_exceptions=True)
        if self._admin is not None and self._admin_task is not None:
            self._admin.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._admin_task, timeout=5)
        if self._admin_socket is not None:
            self._admin_socket.close()
            self._admin_socket = None
        if self._app_started:
            self._app_started = False
            await self.app.stop()


async def serve_forever(settings: Settings, children: list[subprocess.Popen[bytes]] | None = None,
                        before_drain: Callable[[], None] | None = None,
                        http_sockets: list[socket.socket] | None = None) -> None:
    """Serve until SIGTERM or SIGINT (forwarded to worker processes, if any).

    ``before_drain`` runs (in a thread) once stopping starts, before in-flight calls are drained:
    proxy mode stops its Envoy there, so no new request arrives and Envoy's streams close.
    """
    runtime = LinkRuntime(settings, http_sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def _on_signal(sig: int) -> None:
        for child in children or []:
            if child.poll() is None:
                child.send_signal(sig)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig)
    await runtime.start()
    # The process is this runtime's alone: full collections skip what start-up built (link/heap.py).
    _log.debug("froze %d start-up objects out of the cyclic collector's scans", freeze_start_up_heap())
    stopping = asyncio.ensure_future(stop.wait())
    failing = asyncio.ensure_future(runtime.wait())
    await asyncio.wait({stopping, failing}, return_when=asyncio.FIRST_COMPLETED)
    for task in (stopping, failing):
        task.cancel()
    if not stop.is_set():
        _log.error("a server of this process stopped by itself; stopping the others")
    if before_drain is not None:
        await asyncio.to_thread(before_drain)
    _log.info("stopping: draining in-flight calls")
    await runtime.stop()
