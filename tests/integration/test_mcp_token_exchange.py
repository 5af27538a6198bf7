"""Token exchange (RFC 8693) end to end: real MCP server, real OIDC provider over HTTP, real upstream.

A tool with ``spec.auth.tokenExchange`` reaches its upstream with a token the issuer minted for the
upstream's audience, with the MCP caller as subject and Link as actor; never with the caller's own
token. Exchanged tokens are reused until shortly before they expire; every failure (issuer refuses,
issuer down, a caller without an OAuth token) is a clean tool error and nothing reaches the upstream."""

from __future__ import annotations

import contextlib
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
from tests.harness.oidc import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT, OidcServer
from tests.harness.upstream import EchoUpstream
from tests.unit.mcp_server.support import settings, tool

pytestmark = pytest.mark.integration

RESOURCE = "https://tools.example.com/mcp"


class World:
    def __init__(self, mcp: EmbeddedMcpServer, idp: OidcServer, up: EchoUpstream) -> None:
        self.mcp = mcp
        self.idp = idp
        self.up = up

    def token(self, sub: str = "alice") -> str:
        return self.idp.issuer.token(sub=sub, aud=RESOURCE, tenant="tenant-acme", scope="mcp:tools")

    async def rest(self, name: str, headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as http:
            return await http.post(f"{self.mcp.base_url}/mcp/v1/tools/{name}", json={"id": "inv-1"},
                                   headers=headers)


@contextlib.asynccontextmanager
async def world(tmp_path: Path, *, secret: str = "link-secret", lifetime_s: int = 300,
                margin_s: float = 30.0) -> AsyncIterator[World]:
    with OidcServer(clients={"stoa-link": "link-secret"}, exchange_lifetime_s=lifetime_s) as idp, \
            EchoUpstream() as up:
        secrets = tmp_path / "secrets"
        secrets.mkdir(parents=True)
        (secrets / "link-oauth-client").write_text(secret + "\n")
        (secrets / "billing-key").write_text("k-123")
        tools_dir = tmp_path / "tools"
        tools_dir.mkdir()
        (tools_dir / "t.yaml").write_text(yaml.safe_dump_all([
            tool("invoice", tenant="tenant-acme", endpoint=f"{up.url}/invoices/{{id}}", method="GET",
                 auth={"type": "none", "tokenExchange": {"audience": "billing-api", "scope": "invoices:read"}}),
            tool("keyed-invoice", tenant="tenant-acme", endpoint=f"{up.url}/keyed/{{id}}", method="GET",
                 auth={"type": "api_key", "secretRef": "billing-key",
                       "tokenExchange": {"audience": "billing-api", "headerName": "X-User-Token"}}),
        ]))
        s = settings(tmp_path, registry__source="files", registry__path=str(tools_dir), mcp__public_tenants=[],
                     mcp__resource_url=RESOURCE, mcp__secrets_dir=str(secrets),
                     mcp__token_exchange_client_secret_ref="link-oauth-client",
                     mcp__token_exchange_refresh_margin_s=margin_s,
                     identity__keycloak_url=idp.keycloak_url, identity__default_credentials=["jwt", "api_key"])
        async with EmbeddedMcpServer(s) as mcp:
            assert mcp.app.extras["registry"].errors() == {}
            yield World(mcp, idp, up)


def _sent_token(seen_headers: dict[str, str], header: str = "authorization") -> str:
    scheme, _, token = seen_headers[header].partition(" ")
    assert scheme == "Bearer"
    return token


async def test_the_upstream_gets_a_token_minted_for_it_with_the_caller_as_subject(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        caller = w.token("alice")
        http = httpx2.AsyncClient(headers={"authorization": f"Bearer {caller}"})
        async with Client(streamable_http_client(w.mcp.url, http_client=http), mode="legacy") as client:
            result = await client.call_tool("invoice", {"id": "inv-1"})
        rest = await w.rest("invoice", {"authorization": f"Bearer {caller}"})
        seen = w.up.requests
    assert not result.is_error and rest.status_code == 200 and not rest.json()["isError"]
    assert len(seen) == 2
    for request in seen:
        sent = _sent_token(request.headers)
        assert sent != caller
        assert caller not in repr(request)  # nowhere: no header, no query, no body
        claims = w.idp.verify(sent)  # signed by the issuer
        assert claims["aud"] == "billing-api"
        assert claims["sub"] == "alice"
        assert claims["act"] == {"sub": "stoa-link"} and claims["azp"] == "stoa-link"
        assert claims["scope"] == "invoices:read"
    [exchange] = w.idp.exchanges  # the second call reused the first exchange
    assert (exchange.client_id, exchange.subject, exchange.audience, exchange.status) == (
        "stoa-link", "alice", "billing-api", 200)


async def test_an_api_key_and_the_exchanged_token_travel_side_by_side(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        caller = w.token("bob")
        r = await w.rest("keyed-invoice", {"authorization": f"Bearer {caller}"})
        [seen] = w.up.requests
    assert r.status_code == 200 and not r.json()["isError"]
    assert seen.headers["x-api-key"] == "k-123"
    assert "authorization" not in seen.headers
    assert w.idp.verify(_sent_token(seen.headers, "x-user-token"))["sub"] == "bob"


async def test_exchanges_are_cached_per_caller_and_renewed_near_expiry(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        alice, bob = w.token("alice"), w.token("bob")
        for token in (alice, bob, alice, bob, alice):
            assert (await w.rest("invoice", {"authorization": f"Bearer {token}"})).status_code == 200
        assert [e.subject for e in w.idp.exchanges] == ["alice", "bob"]
    # Tokens living no longer than the refresh margin are never reused.
    async with world(tmp_path / "short", lifetime_s=20, margin_s=30) as w:
        token = w.token("carol")
        for _ in range(3):
            assert (await w.rest("invoice", {"authorization": f"Bearer {token}"})).status_code == 200
        sent = {_sent_token(r.headers) for r in w.up.requests}
        assert len(w.idp.exchanges) == 3 and len(sent) == 3


async def _refused_cleanly(w: World, headers: dict[str, str], status: int, reason: str) -> None:
    r = await w.rest("invoice", headers)
    assert r.status_code == 200, r.text  # a tool error, not a protocol or server error
    body = r.json()
    assert body["isError"] is True
    assert body["structuredContent"]["status"] == status and body["structuredContent"]["error"] == reason
    assert r.headers["x-stoa-upstream-status"] == str(status)
    assert w.up.requests == []  # the caller's token went nowhere


async def test_a_refused_exchange_is_a_clean_tool_error(tmp_path: Path) -> None:
    async with world(tmp_path, secret="not-the-secret") as w:
        await _refused_cleanly(w, {"authorization": f"Bearer {w.token()}"}, 502, "token_exchange_refused")
        assert [e.status for e in w.idp.exchanges] == []  # refused at client authentication
        assert w.idp.counts[f"/realms/{w.idp.realm}/protocol/openid-connect/token"] == 1


async def test_an_unreachable_issuer_is_a_clean_tool_error(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        token = w.token()
        # Verify the caller's token first (cached), then take the issuer away for the exchange.
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{w.mcp.base_url}/mcp/v1/tools",
                                   headers={"authorization": f"Bearer {token}"})).status_code == 200
        with w.idp.down():
            await _refused_cleanly(w, {"authorization": f"Bearer {token}"}, 502, "token_exchange_unreachable")


async def test_a_caller_without_an_oauth_token_gets_a_tool_error(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await _refused_cleanly(w, {"x-api-key": "key-acme"}, 401, "token_exchange_no_subject")
        assert w.idp.exchanges == []


async def test_the_providers_token_endpoint_implements_the_grant(tmp_path: Path) -> None:
    with OidcServer(clients={"stoa-link": "s"}) as idp:
        good = idp.issuer.token(sub="dave", aud=RESOURCE)
        form: dict[str, Any] = {"grant_type": TOKEN_EXCHANGE_GRANT, "subject_token": good,
                                "subject_token_type": ACCESS_TOKEN_TYPE, "audience": "billing-api"}
        forged = idp.issuer.token(sub="dave", key=type(idp.issuer.active).generate())
        async with httpx.AsyncClient() as http:
            ok = await http.post(idp.token_url, data=form, auth=("stoa-link", "s"))
            bad_client = await http.post(idp.token_url, data=form, auth=("stoa-link", "x"))
            bad_subject = await http.post(idp.token_url, data={**form, "subject_token": forged},
                                          auth=("stoa-link", "s"))
            other_grant = await http.post(idp.token_url, data={**form, "grant_type": "password"},
                                          auth=("stoa-link", "s"))
    assert ok.status_code == 200 and ok.json()["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert idp.verify(ok.json()["access_token"])["act"] == {"sub": "stoa-link"}
    assert (bad_client.status_code, bad_client.json()["error"]) == (401, "invalid_client")
    assert (bad_subject.status_code, bad_subject.json()["error"]) == (400, "invalid_grant")
    assert (other_grant.status_code, other_grant.json()["error"]) == (400, "unsupported_grant_type")
