"""MCP audience binding (MCP authorization, RFC 8707) through the real MCP server and a real OIDC issuer.

Every token below is validly signed by the trusted issuer; only its ``aud`` differs. The MCP server
accepts exactly the tokens issued for it, with ``mcp.resource_url`` configured and with the resource
derived from the checked Host header, on REST and Streamable HTTP alike; the data plane's
``identity.audiences`` never stand in for the resource. Bound off loopback with OAuth on and no
resource URL, the server refuses to start (exit 2 naming ``mcp.resource_url``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from link.cli import main as cli_main
from link.settings import ConfigError, load_settings
from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.oidc import OidcServer
from tests.harness.procs import free_port
from tests.harness.upstream import EchoUpstream
from tests.unit.mcp_server.support import settings, tool

pytestmark = pytest.mark.integration

OTHER_API = "https://billing.example.com"
DATA_PLANE_AUDIENCE = "billing-app"  # identity.audiences; also the tokens' azp


class Bound:
    def __init__(self, mcp: EmbeddedMcpServer, idp: OidcServer, resource: str) -> None:
        self.mcp = mcp
        self.idp = idp
        self.resource = resource

    def token(self, aud: Any) -> str:
        return self.idp.issuer.token(aud=aud, tenant="tenant-acme")

    async def statuses(self, token: str, host: str | None = None) -> tuple[int, int, int]:
        headers = {"authorization": f"Bearer {token}"}
        if host is not None:
            headers["host"] = host
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        async with httpx.AsyncClient(base_url=self.mcp.base_url, timeout=10) as http:
            listed = await http.get("/mcp/v1/tools", headers=headers)
            called = await http.post("/mcp/v1/tools/whoami", json={}, headers=headers)
            rpc = await http.post("/mcp", json=init,
                                  headers={**headers, "accept": "application/json, text/event-stream"})
        for r in (listed, called, rpc):
            if r.status_code == 401:
                assert 'error="invalid_token"' in r.headers["www-authenticate"]
                assert "resource_metadata=" in r.headers["www-authenticate"]
        return listed.status_code, called.status_code, rpc.status_code


async def _serve(tmp_path: Path, idp: OidcServer, up: EchoUpstream, port: int, **extra: Any) -> EmbeddedMcpServer:
    tools_dir = tmp_path / "tools"
    tools_dir.mkdir(exist_ok=True)
    (tools_dir / "t.yaml").write_text(yaml.safe_dump(tool("whoami", tenant="tenant-acme", endpoint=f"{up.url}/w")))
    s = settings(tmp_path, registry__source="files", registry__path=str(tools_dir), mcp__port=port,
                 mcp__public_tenants=[], identity__keycloak_url=idp.keycloak_url,
                 identity__default_credentials=["jwt"], identity__audiences=[DATA_PLANE_AUDIENCE], **extra)
    return EmbeddedMcpServer(s)


@pytest.fixture
async def configured(tmp_path: Path) -> AsyncIterator[Bound]:
    with OidcServer() as idp, EchoUpstream() as up:
        resource = "https://tools.example.com/mcp"
        async with await _serve(tmp_path, idp, up, 0, mcp__resource_url=resource) as mcp:
            yield Bound(mcp, idp, resource)


@pytest.fixture
async def derived(tmp_path: Path) -> AsyncIterator[Bound]:
    with OidcServer() as idp, EchoUpstream() as up:
        port = free_port()
        async with await _serve(tmp_path, idp, up, port) as mcp:
            yield Bound(mcp, idp, f"http://127.0.0.1:{port}/mcp")


def _cases(b: Bound) -> dict[str, tuple[Any, bool]]:
    """aud value -> accepted?"""
    return {
        "the-resource": (b.resource, True),
        "the-resource-with-a-trailing-slash": (b.resource + "/", True),
        "a-list-with-the-resource-and-another-api": ([OTHER_API, b.resource], True),
        "another-api": (OTHER_API, False),
        "the-data-plane-audience": (DATA_PLANE_AUDIENCE, False),
        "absent": (None, False),
        "empty-list": ([], False),
        "the-issuer": (b.idp.issuer.url, False),
        "the-resource-on-another-path": (b.resource + "/other", False),
        "the-resource-as-a-prefix": (b.resource + "x", False),
        "the-resource-upper-cased": (b.resource.upper(), False),
        "the-server-origin-only": (b.resource.rsplit("/", 1)[0], False),
    }


CASES = ["the-resource", "the-resource-with-a-trailing-slash", "a-list-with-the-resource-and-another-api",
         "another-api", "the-data-plane-audience", "absent", "empty-list", "the-issuer",
         "the-resource-on-another-path", "the-resource-as-a-prefix", "the-resource-upper-cased",
         "the-server-origin-only"]


@pytest.mark.parametrize("case", CASES)
async def test_a_configured_resource_accepts_only_tokens_issued_for_it(configured: Bound, case: str) -> None:
    aud, accepted = _cases(configured)[case]
    statuses = await configured.statuses(configured.token(aud))
    assert statuses == ((200, 200, 200) if accepted else (401, 401, 401)), statuses


@pytest.mark.parametrize("case", CASES)
async def test_a_derived_resource_accepts_only_tokens_issued_for_it(derived: Bound, case: str) -> None:
    aud, accepted = _cases(derived)[case]
    statuses = await derived.statuses(derived.token(aud))
    assert statuses == ((200, 200, 200) if accepted else (401, 401, 401)), statuses


async def test_the_derived_resource_is_the_one_the_metadata_announces(derived: Bound) -> None:
    async with httpx.AsyncClient() as http:
        meta = (await http.get(f"{derived.mcp.base_url}/.well-known/oauth-protected-resource/mcp")).json()
    assert meta["resource"] == derived.resource


async def test_a_token_for_another_local_server_cannot_be_replayed_by_naming_its_port(derived: Bound) -> None:
    other = free_port()
    token = derived.token(f"http://127.0.0.1:{other}/mcp")
    # The Host passes the loopback check ("127.0.0.1:*"), but this server does not listen on that port.
    assert await derived.statuses(token, host=f"127.0.0.1:{other}") == (401, 401, 401)
    # Another loopback spelling of this very server is another resource: the token names the one it was for.
    assert await derived.statuses(derived.token(derived.resource), host=f"localhost:{derived.mcp.port}") == (
        401, 401, 401)


@pytest.mark.parametrize("overrides", [
    {"mcp.host": "0.0.0.0"},
    {"mcp.dns_rebinding_protection": False},
    {"mcp.allowed_hosts": ["*"]},
])
def test_oauth_without_a_checkable_host_or_a_resource_refuses_to_start(
        overrides: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    base = {"identity.keycloak_url": "http://127.0.0.1:1", **overrides}
    with pytest.raises(ConfigError) as err:
        load_settings(env={}, overrides=base)
    assert err.value.key == "mcp.resource_url"
    argv = ["mcp", *[f"--set={k}={','.join(v) if isinstance(v, list) else v}" for k, v in base.items()]]
    assert cli_main(argv) == 2
    assert "configuration error: mcp.resource_url" in capsys.readouterr().err
    # Any of these makes the binding sound again: a resource URL, a checked Host, or no OAuth.
    load_settings(env={}, overrides={**base, "mcp.resource_url": "https://tools.example.com/mcp"})
    load_settings(env={}, overrides={**base, "identity.default_credentials": ["api_key"]})
    if overrides.get("mcp.host") == "0.0.0.0":
        load_settings(env={}, overrides={**base, "mcp.allowed_hosts": ["tools.example.com"]})
