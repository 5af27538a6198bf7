"""`stoa-link mcp --stdio --url …` (the real command, a subprocess) between the SDK's stdio client and the real
MCP server over Streamable HTTP, behind OAuth with a Keycloak-shaped issuer (the OIDC fixture over HTTP).
Proves: initialize, list, call go through; the token from STOA_MCP_TOKEN is what the server verified; a refused
token and a wrong URL give a readable JSON-RPC error (and stderr), stdout carries only protocol; stdin closing
ends the bridge with exit 0."""

from __future__ import annotations

import json
import os
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
from tests.unit.mcp_server.support import settings, tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class World:
    def __init__(self, mcp: EmbeddedMcpServer, idp: OidcServer, up: EchoUpstream, resource: str,
                 tmp: Path) -> None:
        self.mcp, self.idp, self.up, self.resource, self.tmp = mcp, idp, up, resource, tmp

    def token(self, **claims: Any) -> str:
        return self.idp.issuer.token(**{"aud": self.resource, "tenant": "tenant-acme", "scope": "mcp:tools",
                                        **claims})


def bridge_env(**extra: str) -> dict[str, str]:
    # A desktop client's environment: no Link settings; the token variable only when given.
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOA_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def bridge(url: str, **env: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "link.cli", "mcp", "--stdio", "--url", url],
                                 env=bridge_env(**env), cwd=str(ROOT))


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    with OidcServer() as idp, EchoUpstream() as up:
        tools_dir = tmp_path / "tools"
        tools_dir.mkdir()
        (tools_dir / "t.yaml").write_text(yaml.safe_dump_all([
            tool("whoami", tenant="tenant-acme", endpoint=f"{up.url}/whoami", method="GET"),
            tool("other", tenant="tenant-beta", endpoint=f"{up.url}/other"),
        ]))
        port = free_port()
        resource = f"http://127.0.0.1:{port}/mcp"
        s = settings(tmp_path, registry__source="files", registry__path=str(tools_dir), mcp__port=port,
                     mcp__public_tenants=[], mcp__resource_url=resource, mcp__required_scopes=["mcp:tools"],
                     identity__keycloak_url=idp.keycloak_url, identity__default_credentials=["jwt"])
        async with EmbeddedMcpServer(s) as mcp:
            yield World(mcp, idp, up, resource, tmp_path)


async def test_initialize_list_and_call_through_the_bridge_with_the_token(world: World) -> None:
    with (world.tmp / "stderr.log").open("w") as errlog:
        params = bridge(world.mcp.url, STOA_MCP_TOKEN=world.token())
        async with Client(stdio_client(params, errlog=errlog)) as client:
            assert client.server_capabilities.tools is not None
            listed = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("whoami", {})
    # Only the token's tenant's tools: the server verified the token the bridge sent.
    assert listed == ["whoami"]
    assert not result.is_error
    [seen] = world.up.requests
    assert seen.path == "/whoami" and seen.headers["x-stoa-tenant"] == "tenant-acme"
    assert "authorization" not in seen.headers  # the caller's token stays with Link
    assert "Traceback" not in (world.tmp / "stderr.log").read_text()


@pytest.mark.parametrize("token", ["not-a-jwt", "WRONG-AUDIENCE", None])
async def test_a_refused_token_is_a_readable_json_rpc_error(world: World, token: str | None) -> None:
    env = {}
    if token == "WRONG-AUDIENCE":
        env["STOA_MCP_TOKEN"] = world.token(aud="https://elsewhere.example/mcp")
    elif token is not None:
        env["STOA_MCP_TOKEN"] = token
    log = world.tmp / "stderr.log"
    error = await connect_error(bridge(world.mcp.url, **env), log)
    assert "refused the token (HTTP 401)" in error and "STOA_MCP_TOKEN" in error
    assert "refused the token" in log.read_text() and "Traceback" not in log.read_text()
    assert world.up.requests == []


async def test_a_wrong_url_is_a_readable_json_rpc_error(world: World) -> None:
    wrong_path = world.mcp.url.rsplit("/", 1)[0] + "/not-mcp"
    nobody = f"http://127.0.0.1:{free_port()}/mcp"
    for url, expected in ((wrong_path, "HTTP 404"), (nobody, "")):
        log = world.tmp / "stderr.log"
        error = await connect_error(bridge(url, STOA_MCP_TOKEN=world.token()), log)
        assert expected in error and url in error + log.read_text(), (error, log.read_text())
        assert "Traceback" not in log.read_text()


async def connect_error(params: StdioServerParameters, log: Path) -> str:
    """The MCPError a client gets on connecting (the SDK may wrap it in exception groups)."""
    found: list[str] = []
    with log.open("w") as errlog:
        try:
            async with Client(stdio_client(params, errlog=errlog)):
                pass
        except* MCPError as group:
            leaf: BaseException = group
            while isinstance(leaf, BaseExceptionGroup):
                leaf = leaf.exceptions[0]
            found.append(str(leaf))
    assert found, "the client connected"
    return found[0]


def _initialize(rid: int = 1) -> bytes:
    return (json.dumps({"jsonrpc": "2.0", "id": rid, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "desktop", "version": "1"}}}) + "\n").encode()


def test_unreachable_server_answers_on_stdout_and_closing_stdin_ends_the_bridge() -> None:
    nobody = f"http://127.0.0.1:{free_port()}/mcp"
    lines = _initialize(1) + b"this is not json-rpc\n" + _initialize(2)
    done = subprocess.run([sys.executable, "-m", "link.cli", "mcp", "--stdio", "--url", nobody], input=lines,
                          capture_output=True, timeout=60, env=bridge_env(STOA_MCP_TOKEN="t"), cwd=str(ROOT),
                          check=False)
    answers = [json.loads(line) for line in done.stdout.decode().splitlines()]  # nothing but JSON-RPC
    assert sorted(a["id"] for a in answers) == [1, 2]
    assert all(a["error"]["code"] == -32000 and nobody in a["error"]["message"] for a in answers)
    err = done.stderr.decode()
    assert done.returncode == 1 and "cannot reach STOA Link" in err and "Traceback" not in err


@pytest.mark.parametrize(("args", "env", "reason"), [
    (["--url", "ftp://example.com/mcp"], {}, "--url: expected the http(s) URL"),
    ([], {}, "--url is required"),
    (["--url", "http://127.0.0.1:9/mcp"], {"STOA_MCP_TOKEN": " "}, "STOA_MCP_TOKEN: set but empty"),
])
def test_bad_arguments_exit_2_naming_the_problem(args: list[str], env: dict[str, str], reason: str) -> None:
    done = subprocess.run([sys.executable, "-m", "link.cli", "mcp", "--stdio", *args], input=b"",
                          capture_output=True, timeout=30, env=bridge_env(**env), cwd=str(ROOT), check=False)
    assert done.returncode == 2 and reason in done.stderr.decode() and done.stdout == b""
