"""Virtual servers through the real MCP server: a ToolSet with ``spec.serve: true`` is its own MCP
endpoint, ``/mcp/v/{name}``, listing only that set's curated tools and refusing everything else,
behind the same authentication, in the caller's own tenant only, and metered like ``/mcp``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import mcp_types as types
import pytest
import yaml
from mcp.shared.exceptions import MCPError

from link.registry import ToolRegistry
from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.mcp_registry import api_key_client, eventually, toolset_manifest
from tests.harness.mcp_upstreams import sdk_upstream
from tests.unit.mcp_server.support import RecordingSink, settings, tool

pytestmark = pytest.mark.integration




@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[EmbeddedMcpServer]:
    async with sdk_upstream() as sdk:
        reg = tmp_path / "reg"
        reg.mkdir()
        (reg / "all.yaml").write_text(yaml.safe_dump_all([
            # Curated: two of the upstream's tools, one renamed.
            toolset_manifest("support", "tenant-acme", sdk.url, serve=True, prefix="sup_",
                     tools=[{"name": "echo"}, {"name": "progress_and_log", "alias": "steps"}]),
            toolset_manifest("everything", "tenant-acme", sdk.url, prefix="all_"),  # not served on its own
            toolset_manifest("support", "tenant-beta", sdk.url, serve=True, prefix="beta_", tools=[{"name": "stall"}]),
            tool("local-search", tenant="tenant-acme", endpoint="http://127.0.0.1:9/x"),
        ]))
        s = settings(tmp_path, registry__source="files", registry__path=str(reg))
        async with EmbeddedMcpServer(s) as server:
            registry: ToolRegistry = server.app.extras["registry"]
            sets_ = [("tenant-acme", "support"), ("tenant-acme", "everything"), ("tenant-beta", "support")]
            await eventually(lambda: all(registry.toolset_status(t, n).connected for t, n in sets_))
            yield server



async def test_a_virtual_server_lists_and_calls_only_its_curated_tools(gateway: EmbeddedMcpServer) -> None:
    sink = RecordingSink()
    gateway.app.bus.add(sink)
    async with api_key_client(gateway, "/mcp/v/support", "key-acme") as c:
        assert sorted(t.name for t in (await c.list_tools()).tools) == ["steps", "sup_echo"]
        result = await c.call_tool("sup_echo", {"text": "hi"})
        assert not result.is_error and isinstance(result.content[0], types.TextContent)
        assert result.content[0].text == "hi"
        # Tools of the same tenant outside the set exist on /mcp, but not here.
        for outside in ("all_echo", "local-search", "beta_stall", "nope"):
            with pytest.raises(MCPError, match="Unknown tool"):
                await c.call_tool(outside, {"text": "x"})
    async with api_key_client(gateway, "/mcp", "key-acme") as full:
        names = {t.name for t in (await full.list_tools()).tools}
    assert {"sup_echo", "steps", "all_echo", "local-search"} <= names
    # Metered like /mcp: the served call is one outcome with the tool and the caller's tenant.
    called = [o for o in sink.outcomes if o.tool == "sup_echo"]
    assert len(called) == 1 and called[0].tenant == "tenant-acme" and called[0].outcome.value == "success"


async def test_each_tenant_sees_its_own_set_of_that_name(gateway: EmbeddedMcpServer) -> None:
    async with api_key_client(gateway, "/mcp/v/support", "key-beta") as c:
        assert [t.name for t in (await c.list_tools()).tools] == ["beta_stall"]
        with pytest.raises(MCPError, match="Unknown tool"):
            await c.call_tool("sup_echo", {"text": "x"})


@pytest.mark.parametrize(("path", "key", "status"), [
    ("/mcp/v/everything", "key-acme", 404),  # exists, not served
    ("/mcp/v/missing", "key-acme", 404),
    ("/mcp/v/support", "", 404),  # anonymous: only the public tenants' sets, and none is served
    ("/mcp/v/support", "wrong-key", 401),
])
async def test_what_is_not_a_served_set_of_the_caller_is_refused(gateway: EmbeddedMcpServer, path: str,
                                                                  key: str, status: int) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    headers = {"accept": "application/json, text/event-stream"}
    if key:
        headers["x-api-key"] = key
    async with httpx.AsyncClient() as http:
        r = await http.post(gateway.base_url + path, json=init, headers=headers)
    assert r.status_code == status, r.text
