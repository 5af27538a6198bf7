"""Run one Link process: the app, its gRPC server and its admin server, with a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess

import uvicorn

from link.admin import admin_server
from link.app import LinkApp
from link.grpc.server import GrpcServer
from link.settings import Settings

_log = logging.getLogger("stoa.link")


class LinkRuntime:
    """Start/stop a whole Link process inside the current event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = LinkApp(settings)
        self.grpc: GrpcServer | None = None
        self._admin_task: asyncio.Task[None] | None = None
        self._admin: uvicorn.Server | None = None
        self.admin_port = 0

    @property
    def grpc_port(self) -> int:
        assert self.grpc is not None
        return self.grpc.port

    async def start(self) -> None:
        await self.app.start()
        self.grpc = GrpcServer(self.app)
        await self.grpc.start()
        host, _, port = self.settings.server.admin_address.rpartition(":")
        self._admin = admin_server(self.app, host, int(port))
        self._admin_task = asyncio.create_task(self._admin.serve(), name="admin-server")
        for _ in range(500):
            if self._admin.started:
                break
            if self._admin_task.done():
                self._admin_task.result()  # raises the bind error
                raise RuntimeError(f"admin server failed to start on {self.settings.server.admin_address}")
            await asyncio.sleep(0.01)
        servers = getattr(self._admin, "servers", [])
        if servers and servers[0].sockets:
            self.admin_port = servers[0].sockets[0].getsockname()[1]
        _log.info(
            "STOA Link serving gRPC on %s (port %d)%s, admin on %s:%d",
            self.settings.server.grpc_address, self.grpc.port,
            f" and unix:{self.settings.server.grpc_uds}" if self.settings.server.grpc_uds else "",
            host, self.admin_port,
        )

    async def stop(self) -> None:
        """Health NOT_SERVING first, in-flight calls finish, then everything stops."""
        self.app.draining = True
        if self.grpc is not None:
            await self.grpc.stop(self.settings.server.shutdown_grace_s)
        if self._admin is not None and self._admin_task is not None:
            self._admin.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._admin_task, timeout=5)
        await self.app.stop()


async def serve_forever(settings: Settings, children: list[subprocess.Popen[bytes]] | None = None) -> None:
    """Serve until SIGTERM or SIGINT (forwarded to worker processes, if any)."""
    runtime = LinkRuntime(settings)
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
    await stop.wait()
    _log.info("stopping: draining in-flight calls")
    await runtime.stop()
