"""ToolSet federation against a real upstream MCP server (another STOA Link MCP server over HTTP):
discovery, renaming, forwarded calls, and the upstream going away and coming back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import yaml
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from link.registry import ToolRegistry
from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.mcp_registry import eventually, toolset_manifest
from tests.harness.procs import free_port
from tests.harness.upstream import EchoUpstream
from tests.unit.mcp_server.support import settings, tool

pytestmark = pytest.mark.integration


def toolset(name: str, url: str, transport: str, **spec: Any) -> dict[str, Any]:
    return toolset_manifest(name, "tenant-acme", url, transport=transport, **spec)



def upstream_server(tmp_path: Path, echo_url: str, port: int) -> EmbeddedMcpServer:
    tools = tmp_path / "upstream-tools"
    tools.mkdir(exist_ok=True)
    (tools / "t.yaml").write_text(yaml.safe_dump_all([
        tool("search", endpoint=f"{echo_url}/search", method="GET",
             inputSchema={"type": "object", "properties": {"q": {"type": "string"}}}),
        tool("delete-all", endpoint=f"{echo_url}/delete"),
    ]))
    s = settings(tmp_path, registry__source="files", registry__path=str(tools), mcp__port=port)
    return EmbeddedMcpServer(s)


class Federation:
    def __init__(self, gateway: EmbeddedMcpServer, upstream: EmbeddedMcpServer, echo: EchoUpstream,
                 tmp_path: Path) -> None:
        self.gateway = gateway
        self.upstream = upstream
        self.echo = echo
        self.tmp_path = tmp_path


@pytest.fixture
async def federation(tmp_path: Path) -> AsyncIterator[Federation]:
    with EchoUpstream() as echo:
        async with upstream_server(tmp_path, echo.url, free_port()) as upstream:
            sets = tmp_path / "sets"
            sets.mkdir()
            (sets / "sets.yaml").write_text(yaml.safe_dump_all([
                toolset("kb", upstream.url, "streamable-http", prefix="kb_",
                        tools=[{"name": "search"}, {"name": "delete-all", "enabled": False}]),
                toolset("legacy", upstream.base_url + "/mcp/sse", "sse",
                        tools=[{"name": "search", "alias": "old_search"}]),
            ]))
            s = settings(tmp_path, registry__source="files", registry__path=str(sets),
                         mcp__federation_backoff_initial_s=0.1, mcp__federation_backoff_max_s=0.3,
                         mcp__federation_ping_interval_s=0.2)
            async with EmbeddedMcpServer(s) as gateway:
                yield Federation(gateway, upstream, echo, tmp_path)


def names(registry: ToolRegistry) -> list[str]:
    return [t.name for t in registry.tools("tenant-acme")]


async def test_federated_tools_are_discovered_renamed_and_forwarded(federation: Federation) -> None:
    registry: ToolRegistry = federation.gateway.app.extras["registry"]
    await eventually(lambda: names(registry) == ["kb_search", "old_search"])
    assert registry.toolset_status("tenant-acme", "kb").connected
    assert set(registry.toolset_status("tenant-acme", "kb").discovered_tools) == {"search", "delete-all"}
    http = httpx2.AsyncClient(headers={"x-api-key": "key-acme"})
    async with Client(streamable_http_client(federation.gateway.url, http_client=http), mode="legacy") as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert set(listed) == {"kb_search", "old_search"}
        assert listed["kb_search"].input_schema["properties"] == {"q": {"type": "string"}}
        via_http = await client.call_tool("kb_search", {"q": "invoices"})
        via_sse = await client.call_tool("old_search", {"q": "legacy"})
    assert not via_http.is_error and via_http.structured_content is not None
    assert via_http.structured_content["path"] == "/search?q=invoices"
    assert via_sse.structured_content is not None and via_sse.structured_content["path"] == "/search?q=legacy"
    assert [r.path for r in federation.echo.requests] == ["/search?q=invoices", "/search?q=legacy"]


async def test_tools_leave_when_the_upstream_goes_away_and_return_with_it(federation: Federation) -> None:
    registry: ToolRegistry = federation.gateway.app.extras["registry"]
    await eventually(lambda: names(registry) == ["kb_search", "old_search"])
    port = federation.upstream.port
    await federation.upstream.stop()
    await eventually(lambda: names(registry) == [])
    status = registry.toolset_status("tenant-acme", "kb")
    assert not status.connected and status.error
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{federation.gateway.base_url}/mcp/v1/tools/kb_search", json={"q": "x"},
                            headers={"x-api-key": "key-acme"})
    assert r.status_code == 404
    async with upstream_server(federation.tmp_path, federation.echo.url, port):
        await eventually(lambda: names(registry) == ["kb_search", "old_search"])
        assert registry.toolset_status("tenant-acme", "kb").connected
