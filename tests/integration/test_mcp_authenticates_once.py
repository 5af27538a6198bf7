"""The MCP server authenticates each HTTP request once: the HTTP layer verifies the credential, the
pipeline admits that caller under the tool's route (policy, limits, contract, metering) without
verifying it again. Counted on the real server, for every way a tool is called."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from link.identity.authenticator import Authenticator
from link.model import Principal, Request
from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.upstream import EchoUpstream
from tests.unit.mcp_server.support import settings, tool

pytestmark = pytest.mark.integration

ID_SCHEMA = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
ACCEPT = "application/json, text/event-stream"


class Counted:
    def __init__(self, mcp: EmbeddedMcpServer, up: EchoUpstream) -> None:
        self.mcp = mcp
        self.up = up
        self.authentications = 0


@pytest.fixture
async def counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Counted]:
    tools_dir = tmp_path / "tools"
    tools_dir.mkdir()
    with EchoUpstream() as up:
        (tools_dir / "tools.yaml").write_text(yaml.safe_dump(
            tool("acme-invoice", tenant="tenant-acme", endpoint=f"{up.url}/invoices/{{id}}", method="GET",
                 inputSchema=ID_SCHEMA)))
        s = settings(tmp_path, registry__source="files", registry__path=str(tools_dir))
        async with EmbeddedMcpServer(s) as mcp:
            box = Counted(mcp, up)
            original = Authenticator.authenticate

            async def counting(self: Authenticator, request: Request, *args: Any, **kwargs: Any) -> Principal:
                box.authentications += 1
                return await original(self, request, *args, **kwargs)

            monkeypatch.setattr(Authenticator, "authenticate", counting)
            yield box


def _call(**extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "acme-invoice", "arguments": {"id": "42"}, **extra}}


def _result(response: httpx.Response) -> dict[str, Any]:
    text = response.text
    if not text.startswith("{"):  # an SSE answer: the data line of the response event
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:") and '"id":7' in line)
    result: dict[str, Any] = json.loads(text)["result"]
    return result


async def _legacy_session(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    r = await http.post(url, headers={"accept": ACCEPT}, json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    headers = {"accept": ACCEPT, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    await http.post(url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return headers


@pytest.mark.parametrize("era", ["2025-11-25 session", "2026-07-28 stateless", "REST"])
async def test_one_tool_call_authenticates_once(counted: Counted, era: str) -> None:
    url = counted.mcp.url
    async with httpx.AsyncClient(headers={"x-api-key": "key-acme"}, timeout=10) as http:
        if era == "REST":
            before = counted.authentications
            r = await http.post(counted.mcp.base_url + "/mcp/v1/tools/acme-invoice", json={"id": "42"})
            assert r.status_code == 200, r.text
        else:
            if era.endswith("session"):
                headers = await _legacy_session(http, url)
                body = _call()
            else:
                headers = {"accept": ACCEPT, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call",
                           "mcp-name": "acme-invoice"}
                body = _call(_meta={"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                    "io.modelcontextprotocol/clientCapabilities": {}})
            before = counted.authentications
            r = await http.post(url, headers=headers, json=body)
            assert r.status_code == 200, r.text
            assert _result(r)["isError"] is False
    assert counted.authentications - before == 1
    assert [s.path for s in counted.up.requests] == ["/invoices/42"]  # the call went through, as the caller


async def test_a_refused_credential_is_answered_by_the_http_layer_once(counted: Counted) -> None:
    async with httpx.AsyncClient(headers={"x-api-key": "not-a-key"}, timeout=10) as http:
        r = await http.post(counted.mcp.base_url + "/mcp/v1/tools/acme-invoice", json={"id": "42"})
    assert r.status_code == 401
    assert counted.authentications == 1
    assert counted.up.requests == []


async def test_settings_routes_do_not_apply_to_mcp_traffic(tmp_path: Path) -> None:
    """The registry entry is the MCP route (ADR 0019): a data-plane route on /mcp changes nothing there."""
    tools_dir = tmp_path / "tools"
    tools_dir.mkdir()
    locked = [{"name": "locked", "prefix": "/mcp", "required_scopes": ["never-granted"], "rate_limit": "1/min"}]
    with EchoUpstream() as up:
        (tools_dir / "tools.yaml").write_text(yaml.safe_dump(
            tool("acme-invoice", tenant="tenant-acme", endpoint=f"{up.url}/invoices/{{id}}", method="GET",
                 inputSchema=ID_SCHEMA)))
        s = settings(tmp_path, registry__source="files", registry__path=str(tools_dir), routes=locked,
                     ratelimit__enabled=True)
        async with EmbeddedMcpServer(s) as mcp:
            data_plane = await mcp.app.pipeline.run(Request(method="POST", path="/mcp/tools/acme-invoice",
                                                            headers={"x-api-key": "key-acme"}))
            assert (data_plane.decision.http_status, data_plane.decision.reason) == (403, "insufficient_scope")
            async with httpx.AsyncClient(headers={"x-api-key": "key-acme"}, timeout=10) as http:
                for _ in range(3):  # more than the data-plane route's 1/m
                    r = await http.post(mcp.base_url + "/mcp/v1/tools/acme-invoice", json={"id": "42"})
                    assert r.status_code == 200, r.text
    assert len(up.requests) == 3
