"""Running the MCP server as a process: ``stoa-link mcp`` or ``GATEWAY_MODE=edge-mcp``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from link.heap import freeze_start_up_heap
from link.settings import Settings
from mcp_server.embedded import EmbeddedMcpServer

__all__ = ["serve", "serve_async"]

_log = logging.getLogger("stoa.mcp")


async def serve_async(settings: Settings, stop: asyncio.Event | None = None, *, freeze_heap: bool = False) -> None:
    """Start a LinkApp and the MCP server on ``mcp.host:mcp.port``; stop on ``stop`` or SIGTERM/SIGINT."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with EmbeddedMcpServer(settings) as mcp:
        if freeze_heap:  # the process is this server's alone (link/heap.py)
            freeze_start_up_heap()
        _log.info("STOA Link MCP server on %s (Streamable HTTP), %s/mcp/sse (SSE), %s/mcp/v1/tools (REST)",
                  mcp.url, mcp.base_url, mcp.base_url)
        serving = asyncio.create_task(mcp.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        mcp.app.draining = True
        if serving.done():
            serving.result()  # a fatal server error ends the process with it
        else:
            serving.cancel()


def serve(settings: Settings) -> None:
    """Blocking: serve until SIGTERM or SIGINT."""
    try:
        import uvloop

        uvloop.run(serve_async(settings, freeze_heap=True))
    except ImportError:
        asyncio.run(serve_async(settings, freeze_heap=True))
