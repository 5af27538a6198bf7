"""`stoa-link mcp --stdio` as its own OAuth client: the real command (a subprocess driven over stdin/stdout
the way a desktop client drives it) gets tokens by the client_credentials grant from the Keycloak-shaped
OIDC fixture over HTTP, finding the token endpoint through the real MCP server's protected-resource
metadata, and calls through the real MCP server, which verifies each token (issuer, audience, tenant).

Proves: discovery, the grant with the RFC 8707 resource, a cache file of mode 0600 reused by the next
launch (and never holding the secret); renewal before expiry (a new grant, or the refresh token when the
provider issues one) with no refusal in between; a token the server refuses is renewed and the call
retried; a wrong secret, an unknown client, a provider that is down, an issuer the server does not trust
each give the client a readable JSON-RPC error (and stderr a line), never a traceback or a secret; the
provider going down mid-session costs the calls made while it is down, not the session.
"""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.oidc import OidcServer
from tests.harness.procs import free_port
from tests.harness.upstream import EchoUpstream
from tests.integration.test_mcp_stdio_bridge import ROOT, bridge_env, connect_error
from tests.unit.mcp_server.support import settings, tool

pytestmark = pytest.mark.integration

SECRET = "desktop-s3cret-value"


class World:
    def __init__(self, mcp: EmbeddedMcpServer, idp: OidcServer, up: EchoUpstream, tmp: Path) -> None:
        self.mcp, self.idp, self.up, self.tmp = mcp, idp, up, tmp
        self.cache = tmp / "cache" / "tokens.json"
        self.secret_file = tmp / "secret"
        self.secret_file.write_text(SECRET + "\n")
        self.secret_file.chmod(0o600)
        self.log = tmp / "stderr.log"

    @property
    def issuer(self) -> str:
        return self.idp.issuer.url

    def env(self, **extra: str) -> dict[str, str]:
        base = {"STOA_MCP_CLIENT_ID": "desktop", "STOA_MCP_CLIENT_SECRET_FILE": str(self.secret_file),
                "STOA_MCP_TOKEN_CACHE": str(self.cache)}
        return {k: v for k, v in {**base, **extra}.items() if v != "<unset>"}

    def params(self, **extra: str) -> StdioServerParameters:
        return StdioServerParameters(command=sys.executable,
                                     args=["-m", "link.cli", "mcp", "--stdio", "--url", self.mcp.url],
                                     env=bridge_env(**self.env(**extra)), cwd=str(ROOT))

    def grants(self) -> list[str]:
        return [g.grant_type for g in self.idp.grants if g.status == 200]

    def stderr(self) -> str:
        return self.log.read_text()


@pytest.fixture
async def world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    options: dict[str, Any] = getattr(request, "param", {})
    accounts = {"desktop": {"tenant": "tenant-acme", "scope": "mcp:tools"}}
    with OidcServer(clients={"desktop": SECRET, "no-account": "x"}, service_accounts=accounts,
                    public_clients={"desktop-user"}, sign_in_claims={"tenant": "tenant-acme", "scope": "mcp:tools"},
                    **options) as idp, EchoUpstream() as up:
        tools_dir = tmp_path / "tools"
        tools_dir.mkdir()
        (tools_dir / "t.yaml").write_text(yaml.safe_dump_all([
            tool("whoami", tenant="tenant-acme", endpoint=f"{up.url}/whoami", method="GET"),
            tool("other", tenant="tenant-beta", endpoint=f"{up.url}/other"),
        ]))
        port = free_port()
        s = settings(tmp_path, registry__source="files", registry__path=str(tools_dir), mcp__port=port,
                     mcp__public_tenants=[], mcp__resource_url=f"http://127.0.0.1:{port}/mcp",
                     mcp__required_scopes=["mcp:tools"], identity__keycloak_url=idp.keycloak_url,
                     identity__default_credentials=["jwt"], identity__leeway_s=0)  # expired means refused
        async with EmbeddedMcpServer(s) as mcp:
            yield World(mcp, idp, up, tmp_path)


async def test_a_client_credentials_token_is_discovered_granted_cached_0600_and_reused(world: World) -> None:
    for launch in range(2):
        with world.log.open("w") as errlog:
            async with Client(stdio_client(world.params(), errlog=errlog)) as client:
                listed = [t.name for t in (await client.list_tools()).tools]
                result = await client.call_tool("whoami", {})
        assert listed == ["whoami"] and not result.is_error, launch  # the token's tenant only
        assert "Traceback" not in world.stderr()
        if launch == 0:  # unpinned, the bridge says which authorization server it took on the server's word
            assert f"using the authorization server {world.issuer}" in world.stderr()
    # One grant for both launches, for this MCP server as the resource (RFC 8707): the second reused the cache.
    assert world.grants() == ["client_credentials"]
    assert world.idp.grants[0].resource == world.mcp.url
    assert len(world.up.requests) == 2 and all(r.headers["x-stoa-tenant"] == "tenant-acme" for r in world.up.requests)
    assert stat.S_IMODE(world.cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(world.cache.parent.stat().st_mode) == 0o700
    cached = world.cache.read_text()
    assert SECRET not in cached
    [entry] = json.loads(cached)["tokens"].values()
    assert world.idp.verify(entry["access_token"])["aud"] == world.mcp.url


async def test_a_pinned_issuer_is_used_without_a_warning(world: World) -> None:
    with world.log.open("w") as errlog:
        async with Client(stdio_client(world.params(STOA_MCP_ISSUER=world.issuer), errlog=errlog)) as client:
            assert not (await client.call_tool("whoami", {})).is_error
    assert world.grants() == ["client_credentials"] and world.stderr() == ""


@pytest.mark.parametrize(("case", "expected"), [
    ("wrong-secret", "refused client 'desktop' (client_credentials, HTTP 401, invalid_client"),
    ("unknown-client", "refused client 'no-account' (client_credentials, HTTP 400, unauthorized_client"),
    ("provider-down", "cannot fetch http://127.0.0.1"),
    ("untrusted-issuer", "not of STOA_MCP_ISSUER=https://elsewhere.example/realms/stoa"),
])
async def test_a_bridge_that_cannot_get_a_token_gives_a_readable_error(world: World, case: str,
                                                                       expected: str) -> None:
    env = {"wrong-secret": {"STOA_MCP_CLIENT_SECRET_FILE": "<unset>", "STOA_MCP_CLIENT_SECRET": "wrong"},
           "unknown-client": {"STOA_MCP_CLIENT_ID": "no-account", "STOA_MCP_CLIENT_SECRET_FILE": "<unset>",
                              "STOA_MCP_CLIENT_SECRET": "x"},
           "provider-down": {},
           "untrusted-issuer": {"STOA_MCP_ISSUER": "https://elsewhere.example/realms/stoa"}}[case]
    if case == "provider-down":
        world.idp.stop()
    error = await connect_error(world.params(**env), world.log)
    assert "refused the request (HTTP 401): no token" in error and expected in error, error
    log = world.stderr()
    assert expected in log and "Traceback" not in log
    assert SECRET not in error + log and "wrong" not in error.replace("wrong_", "")
    assert world.grants() == [] and world.up.requests == []
    if case == "untrusted-issuer":
        assert world.idp.counts[f"/realms/{world.idp.realm}/protocol/openid-connect/token"] == 0  # never asked


@pytest.mark.parametrize("world", [{"client_token_lifetime_s": 2}, {"client_token_lifetime_s": 2,
                                                                     "refresh_tokens": True}],
                         ids=["new-grant", "refresh-token"], indirect=True)
async def test_a_token_expiring_mid_session_is_renewed_before_it_is_refused(world: World) -> None:
    with world.log.open("w") as errlog:
        async with Client(stdio_client(world.params(), errlog=errlog)) as client:
            assert not (await client.call_tool("whoami", {})).is_error
            await asyncio.sleep(2.2)  # past the first token's expiry
            assert not (await client.call_tool("whoami", {})).is_error
    renewal = "refresh_token" if world.idp.refresh_tokens else "client_credentials"
    assert world.grants()[:2] == ["client_credentials", renewal]
    assert "refused" not in world.stderr() and len(world.up.requests) == 2


async def test_a_token_the_server_refuses_is_renewed_and_the_call_retried(world: World) -> None:
    with world.log.open("w") as errlog:
        async with Client(stdio_client(world.params(), errlog=errlog)) as client:
            await client.call_tool("whoami", {})
    # The cached token still looks fresh to the bridge, but the server no longer takes it (revoked,
    # clocks apart): here, one the issuer signed for another audience.
    doc = json.loads(world.cache.read_text())
    [key] = doc["tokens"]
    doc["tokens"][key]["access_token"] = world.idp.issuer.token(aud="https://elsewhere.example/mcp",
                                                                 tenant="tenant-acme", scope="mcp:tools")
    world.cache.write_text(json.dumps(doc))
    with world.log.open("w") as errlog:
        async with Client(stdio_client(world.params(), errlog=errlog)) as client:
            result = await client.call_tool("whoami", {})
    assert not result.is_error and "Traceback" not in world.stderr()
    assert world.grants() == ["client_credentials", "client_credentials"]
    assert world.idp.verify(json.loads(world.cache.read_text())["tokens"][key]["access_token"])["aud"] == \
        world.mcp.url


@pytest.mark.parametrize("world", [{"client_token_lifetime_s": 2}], indirect=True)
async def test_the_provider_down_mid_session_costs_only_the_calls_made_meanwhile(world: World) -> None:
    with world.log.open("w") as errlog:
        async with Client(stdio_client(world.params(), errlog=errlog)) as client:
            assert not (await client.call_tool("whoami", {})).is_error
            with world.idp.down():
                await asyncio.sleep(2.2)  # the token expires while the provider is away
                with pytest.raises(MCPError, match=r"token endpoint .* unreachable"):
                    await client.call_tool("whoami", {})
            result = await client.call_tool("whoami", {})  # back: same session, a new token
    assert not result.is_error and len(world.up.requests) == 2
    assert world.grants() == ["client_credentials", "client_credentials"]


async def test_a_cache_others_can_read_is_neither_trusted_nor_overwritten(world: World) -> None:
    world.cache.parent.mkdir()
    planted = json.dumps({"version": 1, "tokens": {"x": {"access_token": "planted", "expires_at": 9e12}}})
    world.cache.write_text(planted)
    world.cache.chmod(0o644)
    with world.log.open("w") as errlog:
        async with Client(stdio_client(world.params(), errlog=errlog)) as client:
            assert not (await client.call_tool("whoami", {})).is_error
    assert world.cache.read_text() == planted and stat.S_IMODE(world.cache.stat().st_mode) == 0o644
    assert "ignoring the token cache" in world.stderr() and "0600" in world.stderr()


@pytest.mark.parametrize(("env", "reason"), [
    ({"STOA_MCP_CLIENT_ID": "d", "STOA_MCP_CLIENT_SECRET": ""}, "STOA_MCP_CLIENT_SECRET: required with STOA_MCP_CLIENT_ID"),
    ({"STOA_MCP_CLIENT_SECRET": "sekrit-9f2c"}, "STOA_MCP_CLIENT_ID: required with a client secret"),
    ({"STOA_MCP_CLIENT_ID": "d", "STOA_MCP_CLIENT_SECRET": "sekrit-9f2c", "STOA_MCP_CLIENT_SECRET_FILE": "/x"},
     "set one, not both"),
    ({"STOA_MCP_CLIENT_ID": "d", "STOA_MCP_CLIENT_SECRET_FILE": "/nonexistent/secret"},
     "STOA_MCP_CLIENT_SECRET_FILE: cannot read /nonexistent/secret"),
    ({"STOA_MCP_CLIENT_ID": "d", "STOA_MCP_CLIENT_SECRET": "sekrit-9f2c", "STOA_MCP_TOKEN": "t"},
     "STOA_MCP_TOKEN and STOA_MCP_CLIENT_ID: set one, not both"),
    ({"STOA_MCP_CLIENT_ID": "d", "STOA_MCP_CLIENT_SECRET": "sekrit-9f2c", "STOA_MCP_ISSUER": "http://idp.example/realms/x"},
     "STOA_MCP_ISSUER: 'http://idp.example/realms/x' is not an https URL"),
])
def test_bad_oauth_settings_exit_2_naming_the_variable(env: dict[str, str], reason: str) -> None:
    done = subprocess.run([sys.executable, "-m", "link.cli", "mcp", "--stdio", "--url", "http://127.0.0.1:9/mcp"],
                          input=b"", capture_output=True, timeout=30, env=bridge_env(**env), cwd=str(ROOT),
                          check=False)
    err = done.stderr.decode()
    assert done.returncode == 2 and reason in err and done.stdout == b"", err
    secret = env.get("STOA_MCP_CLIENT_SECRET")
    assert not secret or secret not in err


def _login_env(world: World, mode: str = "") -> dict[str, str]:
    env = bridge_env(STOA_MCP_CLIENT_ID="desktop-user", STOA_MCP_TOKEN_CACHE=str(world.cache),
                     BROWSER=f"{sys.executable} -m tests.harness.browser %s")
    return {**env, "TEST_BROWSER_MODE": mode} if mode else env


async def _login(world: World, mode: str = "") -> subprocess.CompletedProcess[bytes]:
    # In a thread: the MCP server answering the command's discovery runs on this test's event loop.
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "link.cli", "mcp", "--login", "--url", world.mcp.url], input=b"",
        capture_output=True, timeout=60, env=_login_env(world, mode), cwd=str(ROOT), check=False)


@pytest.mark.parametrize("mode", ["stray", "replay"])
async def test_the_sign_in_listener_takes_one_callback_and_ignores_other_visits(world: World, mode: str) -> None:
    done = await _login(world, mode)
    assert done.returncode == 0, done.stderr.decode()
    assert world.grants() == ["authorization_code"]
    [entry] = json.loads(world.cache.read_text())["tokens"].values()
    assert entry["refresh_token"]


@pytest.mark.parametrize("world", [{"client_token_lifetime_s": 2}], indirect=True)
async def test_a_person_signs_in_once_with_pkce_and_the_bridge_then_refreshes_alone(world: World) -> None:
    done = await _login(world)
    err = done.stderr.decode()
    assert done.returncode == 0 and "signed in" in err and done.stdout == b"", err
    assert "code_challenge_method=S256" in err and "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in err
    assert world.grants() == ["authorization_code"] and world.idp.grants[0].resource == world.mcp.url
    assert stat.S_IMODE(world.cache.stat().st_mode) == 0o600
    [entry] = json.loads(world.cache.read_text())["tokens"].values()
    assert entry["refresh_token"] and world.idp.verify(entry["access_token"])["sub"] == "user-1"
    env = {"STOA_MCP_CLIENT_ID": "desktop-user", "STOA_MCP_CLIENT_SECRET_FILE": "<unset>"}
    with world.log.open("w") as errlog:
        async with Client(stdio_client(world.params(**env), errlog=errlog)) as client:
            assert not (await client.call_tool("whoami", {})).is_error
            await asyncio.sleep(2.2)  # past the signed-in token's expiry
            assert not (await client.call_tool("whoami", {})).is_error
    # Every renewal was a refresh (the first may come at launch: the signed-in token lives 2 s).
    first, *renewals = world.grants()
    assert first == "authorization_code" and renewals and set(renewals) == {"refresh_token"}
    assert [r.headers["x-stoa-tenant"] for r in world.up.requests] == ["tenant-acme", "tenant-acme"]


@pytest.mark.parametrize(("mode", "expected"), [
    ("forge-state", "the sign-in answer carries another state"),
    ("deny", "refused the sign-in: access_denied (the user said no)"),
])
async def test_a_sign_in_that_is_refused_or_forged_caches_nothing(world: World, mode: str, expected: str) -> None:
    world.idp.deny_sign_in = mode == "deny"
    done = await _login(world, mode)
    err = done.stderr.decode()
    assert done.returncode == 1 and expected in err and "Traceback" not in err, err
    assert world.grants() == [] and not world.cache.exists()


async def test_a_public_client_without_a_sign_in_is_told_to_sign_in(world: World) -> None:
    env = {"STOA_MCP_CLIENT_ID": "desktop-user", "STOA_MCP_CLIENT_SECRET_FILE": "<unset>"}
    error = await connect_error(world.params(**env), world.log)
    assert f"run `stoa-link mcp --login --url {world.mcp.url}`" in error
    assert world.grants() == []


@pytest.mark.parametrize(("env", "reason"), [
    ({}, "STOA_MCP_CLIENT_ID: required, without a secret"),
    ({"STOA_MCP_CLIENT_ID": "d", "STOA_MCP_CLIENT_SECRET": "sekrit-9f2c"}, "a client with a secret needs no sign-in"),
    ({"STOA_MCP_CLIENT_ID": "d", "STOA_MCP_TOKEN_CACHE": "off"}, "STOA_MCP_TOKEN_CACHE: off"),
])
def test_bad_login_settings_exit_2(env: dict[str, str], reason: str) -> None:
    done = subprocess.run([sys.executable, "-m", "link.cli", "mcp", "--login", "--url", "http://127.0.0.1:9/mcp"],
                          input=b"", capture_output=True, timeout=30, env=bridge_env(**env), cwd=str(ROOT),
                          check=False)
    assert done.returncode == 2 and reason in done.stderr.decode(), done.stderr.decode()
