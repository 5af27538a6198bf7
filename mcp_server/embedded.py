"""The MCP server inside the current event loop (tests, benchmarks, the demo, ``serve``).

``async with EmbeddedMcpServer(settings) as mcp: mcp.url`` starts a LinkApp
(unless one is given), the ASGI app and uvicorn on ``mcp.host:mcp.port``
(port 0 picks a free one) and stops them all on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType

import uvicorn

from link.app import LinkApp
from link.listen import bind_tcp
from link.settings import Settings
from mcp_server.app import McpParts, build_asgi, build_parts

__all__ = ["EmbeddedMcpServer"]


class EmbeddedMcpServer:
    """Runs the MCP server as a task of the running loop."""

    def __init__(
        self, settings: Settings, link_app: LinkApp | None = None, *, start_timeout_s: float = 15.0
    ) -> None:
        self.settings = settings
        self._own_app = link_app is None
        self.app = link_app if link_app is not None else LinkApp(settings)
        self.parts: McpParts = build_parts(self.app)
        self._timeout = start_timeout_s
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0
        self._app_started = False
        self._socket: socket.socket | None = None

    def bind(self) -> None:
        """Take the MCP port now (a busy port fails here, before anything starts); idempotent."""
        if self._socket is None:
            mcp = self.settings.mcp
            host = f"[{mcp.host}]" if ":" in mcp.host else mcp.host
            self._socket = bind_tcp(f"{host}:{mcp.port}", "mcp.port")
            self.port = int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.mcp.host}:{self.port}"

    @property
    def url(self) -> str:
        """The Streamable HTTP endpoint."""
        return self.base_url + "/mcp"

    async def start(self) -> None:
        self.bind()
        assert self._socket is not None
        if self._own_app:
            await self.app.start()
            self._app_started = True
        config = uvicorn.Config(
            build_asgi(self.app, self.parts), host=self.settings.mcp.host, port=self.settings.mcp.port,
            log_level="warning", lifespan="on", access_log=False,
            timeout_graceful_shutdown=max(1, int(self.settings.server.shutdown_grace_s)),
        )
        server = uvicorn.Server(config)
        # The embedding process owns signals.
        server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[self._socket]), name="mcp-http")
        deadline = asyncio.get_running_loop().time() + self._timeout
        while not server.started:
            if self._task.done():
                await self._task  # raises the bind error
                raise RuntimeError("the MCP server stopped while starting")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the MCP server did not start within {self._timeout}s")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                grace = self.settings.server.shutdown_grace_s + 5
                await asyncio.wait_for(asyncio.shield(self._task), timeout=grace)
            if not self._task.done():
                self._server.force_exit = True
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
        self._server = None
        self._task = None
        if self._socket is not None:
            self._socket.close()  # uvicorn closed its listener; this is our handle on the same socket
            self._socket = None
        if self._own_app and self._app_started:
            self._app_started = False
            await self.app.stop()

    async def wait(self) -> None:
        """Until the HTTP server ends by itself (a bind error, a fatal failure)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def __aenter__(self) -> EmbeddedMcpServer:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
