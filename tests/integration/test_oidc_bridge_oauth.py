"""The stdio bridge's token source against the Keycloak-shaped OIDC fixture over real HTTP, on a clock the
test moves: discovery through the MCP server's metadata document, renewal *before* expiry (not after a
refusal), the refresh token when the provider issues one and a new grant when it is refused, a provider
outage while the token is still valid, and one grant for many concurrent requests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import httpx2
import pytest

from mcp_server.bridge_oauth import OAuthClient, TokenSource
from tests.harness.oidc import OidcServer

pytestmark = pytest.mark.integration

RESOURCE_PATH = "/mcp"


class _Metadata(BaseHTTPRequestHandler):
    """An MCP server's RFC 9728 document, at both paths Link serves it (these tests never call MCP)."""

    server: _MetadataServer

    def do_GET(self) -> None:
        if self.path not in ("/.well-known/oauth-protected-resource",
                             f"/.well-known/oauth-protected-resource{RESOURCE_PATH}"):
            self.send_error(404)
            return
        body = json.dumps({"resource": self.server.resource, "authorization_servers": [self.server.issuer]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


class _MetadataServer(ThreadingHTTPServer):
    daemon_threads = True
    issuer = ""
    resource = ""


@pytest.fixture
def metadata(idp: OidcServer) -> Iterator[_MetadataServer]:
    server = _MetadataServer(("127.0.0.1", 0), _Metadata)
    server.issuer = idp.issuer.url
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def idp() -> Iterator[OidcServer]:
    with OidcServer(clients={"desktop": "pw"}, service_accounts={"desktop": {"tenant": "t"}},
                    client_token_lifetime_s=100) as server:
        yield server


@pytest.fixture
def mcp_url(metadata: _MetadataServer) -> str:
    metadata.resource = f"http://127.0.0.1:{metadata.server_address[1]}{RESOURCE_PATH}"
    return metadata.resource


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _source(url: str, http: httpx2.AsyncClient, clock: Clock, cache: Path | None = None) -> TokenSource:
    return TokenSource(OAuthClient("desktop", "pw", cache=cache), url, http, clock=clock)


def _granted(idp: OidcServer) -> list[str]:
    return [g.grant_type for g in idp.grants if g.status == 200]


async def test_a_token_is_renewed_once_due_and_before_it_expires(idp: OidcServer, mcp_url: str) -> None:
    clock = Clock()
    async with httpx2.AsyncClient() as http:
        source = _source(mcp_url, http, clock)
        first = await source.token()
        assert first is not None and idp.verify(first)["aud"] == mcp_url  # the resource from the metadata
        clock.now += 50
        assert await source.token() == first  # not due yet: no request at all
        clock.now += 26  # 76 s of 100: inside the last quarter, still valid
        second = await source.token()
    assert second is not None and second != first
    assert _granted(idp) == ["client_credentials", "client_credentials"]


async def test_the_refresh_token_renews_and_a_refused_one_falls_back_to_a_new_grant(idp: OidcServer,
                                                                                    mcp_url: str) -> None:
    idp.refresh_tokens = True
    clock = Clock()
    async with httpx2.AsyncClient() as http:
        source = _source(mcp_url, http, clock)
        await source.token()
        clock.now += 90
        assert await source.token() is not None
        assert _granted(idp) == ["client_credentials", "refresh_token"]
        idp._refresh.clear()  # the provider forgets (revokes) every refresh token
        clock.now += 90
        assert await source.token() is not None
    assert [(g.grant_type, g.status) for g in idp.grants][2:] == [("refresh_token", 400), ("client_credentials", 200)]


async def test_a_provider_outage_keeps_a_valid_token_and_is_reported_once_it_expires(idp: OidcServer,
                                                                                   mcp_url: str) -> None:
    clock = Clock()
    async with httpx2.AsyncClient() as http:
        source = _source(mcp_url, http, clock)
        first = await source.token()
        with idp.down():
            clock.now += 80  # due, not expired: the old token still serves
            assert await source.token() == first
            assert source.last_failure is not None and "unreachable" in source.last_failure
            clock.now += 30  # expired
            assert await source.token() is None
        assert await source.token() not in (None, first)
        assert source.last_failure is None


async def test_concurrent_requests_share_one_grant(idp: OidcServer, mcp_url: str) -> None:
    clock = Clock()
    tokens: list[str | None] = []
    async with httpx2.AsyncClient() as http:
        source = _source(mcp_url, http, clock)

        async def one() -> None:
            tokens.append(await source.token())

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
    assert len(set(tokens)) == 1 and tokens[0] is not None
    assert _granted(idp) == ["client_credentials"]


async def test_a_refused_token_is_replaced_once_however_many_requests_saw_it_refused(idp: OidcServer,
                                                                                    mcp_url: str) -> None:
    clock = Clock()
    async with httpx2.AsyncClient() as http:
        source = _source(mcp_url, http, clock)
        refused = await source.token()
        renewed = {await source.renew(refused) for _ in range(5)}
    assert len(renewed) == 1 and refused not in renewed
    assert _granted(idp) == ["client_credentials", "client_credentials"]


@pytest.mark.parametrize("claimed", [
    "https://bank.example/api",  # another API altogether
    "http://127.0.0.1:{port}/other",  # another path of the same server
    "http://127.0.0.1:{port}/mc",  # a prefix, not a parent segment
    "http://127.0.0.1:1{port}/mcp",  # another port
    "http://127.0.0.1:{port}/mcp/deeper",  # a child of the URL, not a parent
])
async def test_metadata_claiming_another_resource_gets_no_token_minted(idp: OidcServer, metadata: _MetadataServer,
                                                                        claimed: str) -> None:
    port = metadata.server_address[1]
    metadata.resource = claimed.format(port=port)
    async with httpx2.AsyncClient() as http:
        source = _source(f"http://127.0.0.1:{port}{RESOURCE_PATH}", http, Clock())
        assert await source.token() is None
    assert source.last_failure is not None and "claims to be the resource" in source.last_failure
    assert idp.grants == []


@pytest.mark.parametrize("claimed", ["http://127.0.0.1:{port}/mcp", "http://127.0.0.1:{port}/mcp/",
                                     "http://127.0.0.1:{port}"])
async def test_a_virtual_server_url_takes_the_resource_of_its_parent(idp: OidcServer, metadata: _MetadataServer,
                                                                      claimed: str) -> None:
    port = metadata.server_address[1]
    metadata.resource = claimed.format(port=port)
    async with httpx2.AsyncClient() as http:
        # /mcp/v/support has no metadata of its own: the origin's document names the parent resource.
        source = _source(f"http://127.0.0.1:{port}/mcp/v/support", http, Clock())
        token = await source.token()
    assert token is not None and idp.verify(token)["aud"] == metadata.resource


async def test_bridges_sharing_a_cache_take_each_others_renewals(idp: OidcServer, mcp_url: str,
                                                                  tmp_path: Path) -> None:
    # Refresh tokens rotate (each works once): a second process refreshing with the old one would be refused.
    idp.refresh_tokens = True
    clock = Clock()
    cache = tmp_path / "tokens.json"
    async with httpx2.AsyncClient() as http:
        one, other = _source(mcp_url, http, clock, cache), _source(mcp_url, http, clock, cache)
        first = await one.token()
        assert await other.token() == first  # the other's token, from the cache: no grant of its own
        clock.now += 90
        renewed = await one.token()
        assert await other.token() == renewed
    assert [(g.grant_type, g.status) for g in idp.grants] == [("client_credentials", 200), ("refresh_token", 200)]
