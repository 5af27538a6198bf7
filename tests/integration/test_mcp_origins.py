"""Origin checks of the real MCP HTTP server (MCP transport security, DNS rebinding).

A table of Origin values against every transport: only configured origins (exact, case-insensitive)
get in; any other present Origin is 403 before authentication or the transport runs. With the
default configuration no Origin is allowed at all, so no local web page can drive the server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml

from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.upstream import EchoUpstream
from tests.unit.mcp_server.support import settings, tool

pytestmark = pytest.mark.integration

CONFIGURED = ["https://console.example.com", "http://localhost:3000"]

ALLOWED = [
    None,  # not a browser: no Origin at all
    "https://console.example.com",
    "http://localhost:3000",
    "HTTP://LOCALHOST:3000",  # scheme and host compare case-insensitively
    "https://Console.Example.COM",
]
REFUSED = [
    "http://localhost:3001",  # another port
    "http://localhost",  # the default port is another origin
    "http://127.0.0.1:3000",  # another spelling of loopback is another origin
    "http://[::1]:3000",
    "http://localhost.:3000",  # trailing dot
    "https://console.example.com.",
    "https://console.example.com:443",
    "http://console.example.com",  # another scheme
    "https://console.example.com.evil.test",
    "https://evil.test",
    "null",  # sandboxed iframes, file: pages, redirects
    "file://",
    "",
    "https://console.example.com, https://evil.test",
]


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedMcpServer, EmbeddedMcpServer]]:
    with EchoUpstream() as up:
        tools_dir = tmp_path / "tools"
        tools_dir.mkdir()
        (tools_dir / "t.yaml").write_text(yaml.safe_dump(tool("echo", endpoint=f"{up.url}/echo")))
        common = {"registry__source": "files", "registry__path": str(tools_dir)}
        configured = settings(tmp_path, mcp__allowed_origins=CONFIGURED, **common)
        default = settings(tmp_path, **common)
        async with EmbeddedMcpServer(configured) as a, EmbeddedMcpServer(default) as b:
            yield a, b


async def _statuses(mcp: EmbeddedMcpServer, origin: str | None) -> dict[str, int]:
    headers = {} if origin is None else {"origin": origin}
    rpc = {"accept": "application/json, text/event-stream", **headers}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    async with httpx.AsyncClient(base_url=mcp.base_url, timeout=10) as http:
        out = {
            "streamable-http": (await http.post("/mcp", json=init, headers=rpc)).status_code,
            "rest-list": (await http.get("/mcp/v1/tools", headers=headers)).status_code,
            "rest-call": (await http.post("/mcp/v1/tools/echo", json={}, headers=headers)).status_code,
            "sse-message": (await http.post("/mcp/messages/?session_id=00000000000000000000000000000000",
                                            json={}, headers=headers)).status_code,
        }
        async with http.stream("GET", "/mcp/sse", headers=headers) as sse:
            out["sse-stream"] = sse.status_code
    return out


@pytest.mark.parametrize("origin", ALLOWED)
async def test_configured_origins_and_no_origin_get_in(servers: tuple[EmbeddedMcpServer, EmbeddedMcpServer],
                                                      origin: str | None) -> None:
    statuses = await _statuses(servers[0], origin)
    assert all(status != 403 for status in statuses.values()), statuses
    assert statuses["rest-call"] == 200 and statuses["sse-stream"] == 200


@pytest.mark.parametrize("origin", REFUSED)
async def test_any_other_origin_is_403_on_every_transport(servers: tuple[EmbeddedMcpServer, EmbeddedMcpServer],
                                                         origin: str) -> None:
    statuses = await _statuses(servers[0], origin)
    assert set(statuses.values()) == {403}, statuses


@pytest.mark.parametrize("origin", ["http://127.0.0.1:5173", "http://localhost:8080", "null", "file://"])
async def test_by_default_no_origin_is_allowed(servers: tuple[EmbeddedMcpServer, EmbeddedMcpServer],
                                              origin: str) -> None:
    default = servers[1]
    assert set((await _statuses(default, origin)).values()) == {403}
    assert (await _statuses(default, None))["rest-call"] == 200


async def test_the_servers_own_origin_is_same_origin_and_allowed(
        servers: tuple[EmbeddedMcpServer, EmbeddedMcpServer]) -> None:
    # The Host the client used (checked against the loopback names) and the port the server listens on.
    default = servers[1]
    own = f"http://127.0.0.1:{default.port}"
    statuses = await _statuses(default, own)
    assert all(status != 403 for status in statuses.values()), statuses
    # Same scheme and host but another port, or another loopback spelling than the Host used: refused.
    assert set((await _statuses(default, f"http://127.0.0.1:{default.port + 1}")).values()) == {403}
    assert set((await _statuses(default, f"http://localhost:{default.port}")).values()) == {403}
    assert set((await _statuses(default, f"https://127.0.0.1:{default.port}")).values()) == {403}
