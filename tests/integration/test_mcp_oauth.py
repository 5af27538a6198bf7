"""MCP authorization: the server as an OAuth resource server in front of a Keycloak-shaped issuer.

Resource metadata names the realm; a missing or bad token gets 401 with the metadata URL and the
required scope; the token's audience must be this resource; the caller's tenant comes from the
verified token; the caller's token never reaches a tool's upstream (see test_mcp_token_exchange)."""

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

from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.oidc import OidcServer
from tests.harness.procs import free_port
from tests.harness.upstream import EchoUpstream
from tests.unit.mcp_server.support import settings, tool

pytestmark = pytest.mark.integration


class World:
    def __init__(self, mcp: EmbeddedMcpServer, idp: OidcServer, up: EchoUpstream, resource: str) -> None:
        self.mcp = mcp
        self.idp = idp
        self.up = up
        self.resource = resource

    def token(self, **claims: Any) -> str:
        base: dict[str, Any] = {"aud": self.resource, "tenant": "tenant-acme", "scope": "mcp:tools"}
        base.update(claims)
        return self.idp.issuer.token(**base)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    with OidcServer() as idp, EchoUpstream() as up:
        tools_dir = tmp_path / "tools"
        tools_dir.mkdir()
        (tools_dir / "t.yaml").write_text(yaml.safe_dump_all([
            tool("whoami", tenant="tenant-acme", endpoint=f"{up.url}/whoami", method="GET",
                 auth={"type": "none"}),
            tool("other", tenant="tenant-beta", endpoint=f"{up.url}/other"),
        ]))
        port = free_port()
        resource = f"http://127.0.0.1:{port}/mcp"
        s = settings(tmp_path, registry__source="files", registry__path=str(tools_dir), mcp__port=port,
                     mcp__public_tenants=[], mcp__resource_url=resource, mcp__required_scopes=["mcp:tools"],
                     identity__keycloak_url=idp.keycloak_url, identity__default_credentials=["jwt"])
        async with EmbeddedMcpServer(s) as mcp:
            yield World(mcp, idp, up, resource)


async def test_metadata_names_the_realm_and_401_points_to_it(world: World) -> None:
    async with httpx.AsyncClient() as http:
        meta = (await http.get(f"{world.mcp.base_url}/.well-known/oauth-protected-resource")).json()
        r = await http.post(world.mcp.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                            headers={"accept": "application/json, text/event-stream"})
    assert meta["resource"] == world.resource
    assert meta["authorization_servers"] == [f"{world.idp.keycloak_url}/realms/stoa"]
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == (
        f'Bearer resource_metadata="http://127.0.0.1:{world.mcp.port}/.well-known/oauth-protected-resource/mcp", '
        'scope="mcp:tools"')


async def test_a_valid_token_gets_its_tenants_tools_and_stays_with_link(world: World) -> None:
    token = world.token()
    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"})
    async with Client(streamable_http_client(world.mcp.url, http_client=http), mode="legacy") as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["whoami"]
        result = await client.call_tool("whoami", {})
    assert not result.is_error
    [seen] = world.up.requests
    assert "authorization" not in seen.headers and token not in repr(seen)
    assert seen.headers["x-stoa-tenant"] == "tenant-acme"


async def test_a_token_for_another_audience_is_refused(world: World) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{world.mcp.base_url}/mcp/v1/tools",
                           headers={"authorization": f"Bearer {world.token(aud='https://other.example')}"})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert "resource_metadata=" in r.headers["www-authenticate"]


async def test_a_token_without_the_required_scope_gets_403_naming_it(world: World) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{world.mcp.base_url}/mcp/v1/tools",
                           headers={"authorization": f"Bearer {world.token(scope='profile')}"})
    assert r.status_code == 403
    assert 'scope="mcp:tools"' in r.headers["www-authenticate"]
    assert world.up.requests == []
