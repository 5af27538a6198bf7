"""The MCP server end to end: official SDK clients on Streamable HTTP (every protocol version), SSE
and REST, listing and calling tools backed by a real upstream HTTP server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import yaml
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from link.events import RequestOutcome
from link.model import Outcome
from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.upstream import EchoUpstream
from tests.unit.mcp_server.support import RecordingSink, settings, tool

pytestmark = pytest.mark.integration

ID_SCHEMA = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}


def manifests() -> list[dict[str, Any]]:
    return [
        tool("get-item", endpoint="${ECHO_UPSTREAM}/items/{id}", method="GET", inputSchema=ID_SCHEMA),
        tool("broken", endpoint="${ECHO_UPSTREAM}/status/500"),
        tool("acme-invoice", tenant="tenant-acme", endpoint="${ECHO_UPSTREAM}/invoices/{id}", method="GET",
             inputSchema=ID_SCHEMA),
    ]


class Running:
    def __init__(self, mcp: EmbeddedMcpServer, up: EchoUpstream, tools_dir: Path, sink: RecordingSink) -> None:
        self.mcp = mcp
        self.up = up
        self.tools_dir = tools_dir
        self.sink = sink

    def add_tool(self, manifest: dict[str, Any]) -> None:
        name = manifest["metadata"]["name"]
        (self.tools_dir / f"{name}.yaml").write_text(yaml.safe_dump(manifest))


@pytest.fixture
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    tools_dir = tmp_path / "tools"
    tools_dir.mkdir()
    (tools_dir / "tools.yaml").write_text(yaml.safe_dump_all(manifests()))
    with EchoUpstream() as up:
        monkeypatch.setenv("ECHO_UPSTREAM", up.url)
        s = settings(tmp_path, registry__source="files", registry__path=str(tools_dir),
                     registry__reload_interval_s=0.05)
        async with EmbeddedMcpServer(s) as mcp:
            sink = RecordingSink()
            mcp.app.add_outcome_sink(sink)
            assert mcp.app.extras["registry"].errors() == {}
            yield Running(mcp, up, tools_dir, sink)


def keyed(url: str, key: str) -> Any:
    return streamable_http_client(url, http_client=httpx2.AsyncClient(headers={"x-api-key": key}))


async def test_streamable_http_lists_and_calls_through_the_pipeline(running: Running) -> None:
    async with Client(running.mcp.url, mode="legacy") as client:
        assert client.protocol_version == "2025-11-25"
        assert client.server_capabilities.tools is not None and client.server_capabilities.tools.list_changed
        listed = await client.list_tools()
        assert [t.name for t in listed.tools] == ["broken", "get-item"]
        assert listed.tools[1].input_schema == ID_SCHEMA
        result = await client.call_tool("get-item", {"id": "a b"})
    assert not result.is_error
    assert result.structured_content is not None and result.structured_content["path"] == "/items/a%20b"
    assert json.loads(result.content[0].text)["method"] == "GET"  # type: ignore[union-attr]
    [seen] = running.up.requests
    assert seen.headers["x-stoa-tenant"] == "demo" and seen.path == "/items/a%20b"


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
async def test_handshake_protocol_versions_are_negotiated(running: Running, version: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    async with httpx.AsyncClient() as http:
        r = await http.post(running.mcp.url, json=body, headers={"accept": "application/json, text/event-stream"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json()["result"]["protocolVersion"] == version


async def test_protocol_2026_07_28_lists_and_calls(running: Running) -> None:
    async with Client(running.mcp.url, mode="2026-07-28") as client:
        assert client.protocol_version == "2026-07-28"
        assert [t.name for t in (await client.list_tools()).tools] == ["broken", "get-item"]
        result = await client.call_tool("get-item", {"id": "7"})
    assert result.structured_content is not None and result.structured_content["path"] == "/items/7"


async def test_legacy_sse_transport_lists_and_calls(running: Running) -> None:
    async with Client(sse_client(running.mcp.base_url + "/mcp/sse"), mode="legacy") as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["broken", "get-item"]
        result = await client.call_tool("get-item", {"id": "s"})
    assert result.structured_content is not None and result.structured_content["path"] == "/items/s"


async def test_rest_lists_and_calls(running: Running) -> None:
    base = running.mcp.base_url
    async with httpx.AsyncClient() as http:
        listed = (await http.get(f"{base}/mcp/v1/tools")).json()
        called = await http.post(f"{base}/mcp/v1/tools/get-item", json={"id": "r"})
    assert [t["name"] for t in listed["tools"]] == ["broken", "get-item"]
    assert called.status_code == 200 and called.json()["structuredContent"]["path"] == "/items/r"


async def test_an_api_key_caller_gets_its_tenant_on_every_transport(running: Running) -> None:
    async with Client(keyed(running.mcp.url, "key-acme"), mode="legacy") as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["acme-invoice"]
        result = await client.call_tool("acme-invoice", {"id": "9"})
    assert result.structured_content is not None and result.structured_content["path"] == "/invoices/9"
    sse = sse_client(running.mcp.base_url + "/mcp/sse", headers={"x-api-key": "key-acme"})
    async with Client(sse, mode="legacy") as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["acme-invoice"]
    assert running.up.requests[0].headers["x-stoa-consumer"] == "acme-app"


async def test_a_cross_tenant_call_is_refused_on_every_transport(running: Running) -> None:
    async with Client(keyed(running.mcp.url, "key-beta"), mode="legacy") as client:
        assert (await client.list_tools()).tools == []
        with pytest.raises(MCPError, match="Unknown tool: acme-invoice"):
            await client.call_tool("acme-invoice", {"id": "1"})
    async with httpx.AsyncClient() as http:
        rest = await http.post(f"{running.mcp.base_url}/mcp/v1/tools/acme-invoice", json={"id": "1"},
                               headers={"x-api-key": "key-beta"})
        anonymous = await http.post(f"{running.mcp.base_url}/mcp/v1/tools/acme-invoice", json={"id": "1"})
    assert rest.status_code == 404
    assert anonymous.status_code == 401 and "resource_metadata=" in anonymous.headers["www-authenticate"]
    assert running.up.requests == []
    assert [o.outcome for o in running.sink.outcomes] == [Outcome.NOT_FOUND, Outcome.NOT_FOUND]


async def test_invalid_arguments_never_reach_the_upstream(running: Running) -> None:
    async with Client(running.mcp.url, mode="legacy") as client:
        with pytest.raises(MCPError) as err:
            await client.call_tool("get-item", {"id": 12})
    assert err.value.error.code == -32602 and "id: 12 is not of type 'string'" in err.value.error.message
    async with Client(sse_client(running.mcp.base_url + "/mcp/sse"), mode="legacy") as client:
        with pytest.raises(MCPError):
            await client.call_tool("get-item", {})
    async with httpx.AsyncClient() as http:
        rest = await http.post(f"{running.mcp.base_url}/mcp/v1/tools/get-item", json={"id": []})
    assert rest.status_code == 400 and rest.json()["field"] == "id"
    assert running.up.requests == []


async def test_an_upstream_500_is_an_error_result_not_a_protocol_error(running: Running) -> None:
    async with Client(running.mcp.url, mode="legacy") as client:
        result = await client.call_tool("broken", {})
    assert result.is_error
    assert result.content[0].text.startswith("HTTP 500: ")  # type: ignore[union-attr]
    assert result.structured_content is not None and result.structured_content["status"] == 500
    async with httpx.AsyncClient() as http:
        rest = await http.post(f"{running.mcp.base_url}/mcp/v1/tools/broken", json={})
    assert rest.status_code == 200 and rest.json()["isError"] and rest.headers["x-stoa-upstream-status"] == "500"


async def test_one_metering_event_per_tool_call(running: Running) -> None:
    async with Client(running.mcp.url, mode="legacy") as client:
        await client.call_tool("get-item", {"id": "1"})
        await client.call_tool("broken", {})
    events: list[RequestOutcome] = running.sink.outcomes
    assert [(e.tool, e.outcome, e.http_status) for e in events] == [
        ("get-item", Outcome.SUCCESS, 200), ("broken", Outcome.ERROR, 500)]
    assert all(e.source == "mcp" and e.tenant == "demo" and e.t_backend_ms > 0 for e in events)


async def test_list_changes_reach_handshake_sessions(running: Running) -> None:
    changed = asyncio.Event()

    async def on_message(message: Any) -> None:
        if type(message).__name__ == "ToolListChangedNotification":
            changed.set()

    async with Client(running.mcp.url, mode="legacy", message_handler=on_message) as client:
        await client.list_tools()
        await asyncio.sleep(0.2)  # let the client open its standalone GET stream
        running.add_tool(tool("added-later", endpoint="${ECHO_UPSTREAM}/later"))
        await asyncio.wait_for(changed.wait(), 10)
        assert "added-later" in [t.name for t in (await client.list_tools()).tools]


async def test_list_changes_reach_legacy_sse_sessions(running: Running) -> None:
    changed = asyncio.Event()

    async def on_message(message: Any) -> None:
        if type(message).__name__ == "ToolListChangedNotification":
            changed.set()

    async with Client(sse_client(running.mcp.base_url + "/mcp/sse"), mode="legacy",
                      message_handler=on_message) as client:
        await client.list_tools()
        running.add_tool(tool("added-for-sse", endpoint="${ECHO_UPSTREAM}/later"))
        await asyncio.wait_for(changed.wait(), 10)
        assert "added-for-sse" in [t.name for t in (await client.list_tools()).tools]


async def test_list_changes_reach_2026_listen_streams(running: Running) -> None:
    async with Client(running.mcp.url, mode="2026-07-28") as client:
        async with client.listen(tools_list_changed=True) as subscription:
            running.add_tool(tool("added-for-listeners", endpoint="${ECHO_UPSTREAM}/later"))
            event = await asyncio.wait_for(subscription.__aiter__().__anext__(), 10)
        assert type(event).__name__ == "ToolsListChanged"
        assert "added-for-listeners" in [t.name for t in (await client.list_tools()).tools]


async def test_sse_answer_mode_serves_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools_dir = tmp_path / "tools"
    tools_dir.mkdir()
    (tools_dir / "tools.yaml").write_text(yaml.safe_dump_all(manifests()))
    with EchoUpstream() as up:
        monkeypatch.setenv("ECHO_UPSTREAM", up.url)
        s = settings(tmp_path, registry__source="files", registry__path=str(tools_dir), mcp__json_response=False)
        async with EmbeddedMcpServer(s) as mcp:
            async with Client(mcp.url, mode="legacy") as client:
                assert [t.name for t in (await client.list_tools()).tools] == ["broken", "get-item"]
                result = await client.call_tool("get-item", {"id": "sse"})
            async with httpx.AsyncClient() as http:
                r = await http.post(mcp.url, headers={"accept": "application/json, text/event-stream"}, json={
                    "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    assert result.structured_content is not None and result.structured_content["path"] == "/items/sse"
    assert r.headers["content-type"].startswith("text/event-stream")
