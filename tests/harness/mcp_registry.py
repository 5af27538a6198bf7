"""What the MCP integration tests share around a gateway: ToolSet manifests, an SDK client with an
API key, and a bounded wait for the federation to catch up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_server.embedded import EmbeddedMcpServer

__all__ = ["api_key_client", "eventually", "toolset_manifest"]


def toolset_manifest(name: str, tenant: str, url: str, *, transport: str = "streamable-http",
                     timeout_s: float = 5, **spec: Any) -> dict[str, Any]:
    """A ``kind: ToolSet`` federating the MCP server at ``url`` into ``tenant``; ``spec`` adds fields."""
    return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "ToolSet", "metadata": {"name": name, "namespace": tenant},
            "spec": {"upstream": {"url": url, "transport": transport, "timeoutSeconds": timeout_s}, **spec}}


def api_key_client(server: EmbeddedMcpServer, path: str, key: str) -> Client:
    """An SDK client (handshake era) of ``path`` on ``server``, calling with the API key ``key``."""
    http = httpx2.AsyncClient(headers={"x-api-key": key}, timeout=15)
    return Client(streamable_http_client(server.base_url + path, http_client=http), mode="legacy", cache=None)


async def eventually(predicate: Callable[[], bool], within: float = 15.0, interval: float = 0.02) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(interval)
