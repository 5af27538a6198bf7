"""The HTTP layer: DNS-rebinding guard, caller authentication, OAuth challenge and metadata, REST."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from link.model import Decision, Outcome
from mcp_server.app import build_asgi, build_parts
from mcp_server.auth import CallerAuthenticator
from mcp_server.secrets import SecretStore
from mcp_server.security import matches
from mcp_server.upstream import HttpToolInvoker
from tests.unit.mcp_server.support import MockUpstream, link_app, settings, tool

BASE = "http://127.0.0.1:3001"
MANIFESTS = [tool("echo", inputSchema={"type": "object", "properties": {"id": {"type": "string"}}}),
             tool("acme-tool", tenant="tenant-acme")]


def _client(tmp_path: Path, up: MockUpstream, **overrides: Any) -> httpx.AsyncClient:
    app, _, _ = link_app(settings(tmp_path, **overrides), MANIFESTS)
    parts = build_parts(app)
    parts.gateway._invoker = HttpToolInvoker(SecretStore(None), transport=up.transport())  # no network
    asgi = build_asgi(app, parts)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=BASE)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(tmp_path, MockUpstream(), mcp__resource_url="https://mcp.example.com/mcp",
                       identity__keycloak_url="https://sso.example.com", mcp__required_scopes=["tools"]) as c:
        yield c


@pytest.mark.parametrize(
    ("value", "ok"),
    [("127.0.0.1:3001", True), ("localhost:9", True), ("[::1]:80", True), ("evil.com", False),
     ("127.0.0.1.evil.com:80", False), ("localhost:abc", False)],
)
def test_host_patterns(value: str, ok: bool) -> None:
    assert matches(value, ["127.0.0.1:*", "localhost:*", "[::1]:*"]) is ok


async def test_a_foreign_host_or_origin_is_refused_before_anything_else(client: httpx.AsyncClient) -> None:
    assert (await client.get("/mcp/v1/tools", headers={"host": "evil.com"})).status_code == 421
    assert (await client.get("/mcp/v1/tools", headers={"origin": "http://evil.com"})).status_code == 403
    # No origin is allowed by default: another local web app cannot drive the server.
    assert (await client.get("/mcp/v1/tools", headers={"origin": "http://localhost:5173"})).status_code == 403
    assert (await client.get("/mcp/v1/tools")).status_code == 200


async def test_resource_metadata_names_the_keycloak_realm(client: httpx.AsyncClient) -> None:
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        doc = (await client.get(path)).json()
        assert doc["resource"] == "https://mcp.example.com/mcp"
        assert doc["authorization_servers"] == ["https://sso.example.com/realms/stoa"]
        assert doc["scopes_supported"] == ["tools"]


async def test_a_bad_credential_gets_401_with_the_resource_metadata_challenge(client: httpx.AsyncClient) -> None:
    r = await client.get("/mcp/v1/tools", headers={"x-api-key": "wrong"})
    assert r.status_code == 401
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"' in challenge
    assert 'scope="tools"' in challenge


async def test_anonymous_calls_of_private_tools_are_challenged_public_ones_served(tmp_path: Path) -> None:
    up = MockUpstream()
    async with _client(tmp_path, up) as c:
        private = await c.post("/mcp/v1/tools/acme-tool", json={})
        assert private.status_code == 401 and "resource_metadata=" in private.headers["www-authenticate"]
        rpc = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "acme-tool"}}
        over_mcp = await c.post("/mcp", json=rpc, headers={"accept": "application/json, text/event-stream"})
        assert over_mcp.status_code == 401
        assert up.seen == []
        public = await c.post("/mcp/v1/tools/echo", json={"id": "1"})
        assert public.status_code == 200 and public.headers["x-stoa-upstream-status"] == "200"
        assert public.json()["isError"] is False


async def test_rest_listing_and_calling_with_a_key(tmp_path: Path) -> None:
    up = MockUpstream()
    async with _client(tmp_path, up) as c:
        listed = await c.get("/mcp/v1/tools", headers={"x-api-key": "key-acme"})
        assert [t["name"] for t in listed.json()["tools"]] == ["acme-tool"]
        called = await c.post("/mcp/v1/tools/acme-tool", json={"arguments": {"a": 1}},
                              headers={"x-api-key": "key-acme"})
        assert called.status_code == 200
        assert called.json()["structuredContent"]["body"] == {"a": 1}
        other = await c.post("/mcp/v1/tools/echo", json={}, headers={"x-api-key": "key-acme"})
        assert other.status_code == 404 and other.json()["error"] == "unknown_tool"
        invalid = await c.post("/mcp/v1/tools/echo", json={"id": 3})
        assert invalid.status_code == 400 and invalid.json()["field"] == "id"
        not_json = await c.post("/mcp/v1/tools/echo", content=b"[1]")
        assert not_json.status_code == 400
        assert len(up.seen) == 1


async def test_without_public_tenants_every_request_needs_credentials(tmp_path: Path) -> None:
    async with _client(tmp_path, MockUpstream(), mcp__public_tenants=[]) as c:
        r = await c.get("/mcp/v1/tools")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer resource_metadata=")
        assert (await c.get("/healthz")).status_code == 200  # probes stay open


def test_challenge_keeps_the_identity_phases_error_and_adds_metadata(tmp_path: Path) -> None:
    app, _, _ = link_app(settings(tmp_path, mcp__required_scopes=["a", "b"]), [])
    auth = CallerAuthenticator(app)
    refusal = Decision.deny(401, Outcome.UNAUTHENTICATED, "expired", "x", {
        "www-authenticate": 'Bearer realm="stoa", error="invalid_token", error_description="token expired, renew"'})
    value = auth.challenge(refusal, "http://127.0.0.1:3001")
    assert value == ('Bearer realm="stoa", error="invalid_token", error_description="token expired, renew", '
                     'resource_metadata="http://127.0.0.1:3001/.well-known/oauth-protected-resource/mcp", '
                     'scope="a b"')


def test_host_check_only_where_rebinding_matters() -> None:
    from mcp_server.security import host_check_needed

    default = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    assert host_check_needed("127.0.0.1", default, default)
    assert not host_check_needed("0.0.0.0", default, default)  # in a cluster: service names, Origin still checked
    assert host_check_needed("0.0.0.0", ["mcp.example.com"], default)
