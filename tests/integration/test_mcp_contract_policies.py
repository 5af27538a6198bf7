"""A contract's required policies over MCP, through the MCP HTTP server (streamable HTTP and REST).

The tool ``get_invoice`` is the MCP face of an endpoint of the H contract
``billing-api`` (``llm.tool_name``): an API-key caller, accepted by the MCP
server itself, is refused by the contract; a JWT caller gets the result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import httpx2
import pytest
import yaml
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.oidc import OidcServer
from tests.harness.procs import free_port
from tests.harness.upstream import EchoUpstream
from tests.unit.mcp_server.support import settings, tool

pytestmark = pytest.mark.integration

CONTRACT = {
    "name": "billing-api", "version": "1.0.0", "tenant_id": "tenant-acme", "classification": "H",
    "required_policies": ["rate-limit", "auth-jwt"], "status": "published",
    "endpoints": [{"path": "/invoices/{id}", "methods": ["GET"], "backend_url": "https://billing.internal/{id}",
                   "llm": {"tool_name": "get_invoice", "side_effects": "read"}}],
}


class World:
    def __init__(self, mcp: EmbeddedMcpServer, idp: OidcServer, up: EchoUpstream, resource: str) -> None:
        self.mcp, self.idp, self.up, self.resource = mcp, idp, up, resource

    def token(self) -> str:
        return self.idp.issuer.token(aud=self.resource, tenant="tenant-acme", scope="mcp:tools")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    with OidcServer() as idp, EchoUpstream() as up:
        tools_dir = tmp_path / "tools"
        tools_dir.mkdir()
        (tools_dir / "t.yaml").write_text(yaml.safe_dump_all([
            tool("get_invoice", tenant="tenant-acme", endpoint=f"{up.url}/invoices", method="GET"),
            tool("free_tool", tenant="tenant-acme", endpoint=f"{up.url}/free", method="GET"),
        ]))
        contracts = tmp_path / "contracts"
        contracts.mkdir()
        (contracts / "billing.yaml").write_text(yaml.safe_dump(CONTRACT))
        port = free_port()
        resource = f"http://127.0.0.1:{port}/mcp"
        s = settings(tmp_path, registry__source="files", registry__path=str(tools_dir), mcp__port=port,
                     mcp__public_tenants=[], mcp__resource_url=resource,
                     identity__keycloak_url=idp.keycloak_url, contracts__paths=[str(contracts)],
                     ratelimit__tenant_default="1000/min")
        async with EmbeddedMcpServer(s) as mcp:
            yield World(mcp, idp, up, resource)


async def test_mcp_contract_tool_refuses_an_api_key_and_serves_a_jwt(world: World) -> None:
    async with httpx.AsyncClient() as http:
        keyed = await http.post(f"{world.mcp.base_url}/mcp/v1/tools/get_invoice", json={},
                                headers={"x-api-key": "key-acme"})
        free = await http.post(f"{world.mcp.base_url}/mcp/v1/tools/free_tool", json={},
                               headers={"x-api-key": "key-acme"})
        with_jwt = await http.post(f"{world.mcp.base_url}/mcp/v1/tools/get_invoice", json={},
                                   headers={"authorization": f"Bearer {world.token()}"})
    assert keyed.status_code == 401, keyed.text
    assert "contract billing-api requires a JWT bearer token" in keyed.text
    assert free.status_code == 200  # a tool no contract governs: the API key is enough
    assert with_jwt.status_code == 200, with_jwt.text
    assert [r.path for r in world.up.requests] == ["/free", "/invoices"]


async def test_mcp_streamable_http_call_of_a_contract_tool_needs_a_jwt(world: World) -> None:
    keyed = httpx2.AsyncClient(headers={"x-api-key": "key-acme"})
    async with Client(streamable_http_client(world.mcp.url, http_client=keyed), mode="legacy") as client:
        refused = await client.call_tool("get_invoice", {})
    assert refused.is_error
    assert "requires a JWT" in str(refused.content)
    bearer = httpx2.AsyncClient(headers={"authorization": f"Bearer {world.token()}"})
    async with Client(streamable_http_client(world.mcp.url, http_client=bearer), mode="legacy") as client:
        served = await client.call_tool("get_invoice", {})
    assert not served.is_error
    assert [r.path for r in world.up.requests] == ["/invoices"]
