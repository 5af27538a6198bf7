"""OpenAPI in, end to end: `stoa-link import openapi` (the real command) on a spec of a stand-in HTTP API,
the output loaded by the MCP server's files registry, tools called over Streamable HTTP with the SDK client.
The stand-in records what reached it: path, query, JSON body and the credential header the spec asks for."""

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
from mcp.shared.exceptions import MCPError

from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.upstream import EchoUpstream
from tests.unit.mcp_server.support import settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

STAND_IN_SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Inventory", "version": "1.0.0"},
    "servers": [{"url": "https://inventory.invalid/{base}", "variables": {"base": {"default": "v2"}}}],
    "security": [{"token": []}],
    "components": {
        "securitySchemes": {"token": {"type": "http", "scheme": "bearer"},
                            "partnerKey": {"type": "apiKey", "in": "header", "name": "X-Partner-Key"}},
        "schemas": {"Stock": {"type": "object", "required": ["sku", "quantity"],
                              "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer"}}}},
    },
    "paths": {
        "/warehouses/{warehouseId}/items": {
            "parameters": [{"name": "warehouseId", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"operationId": "listItems", "summary": "List the items of a warehouse",
                    "parameters": [{"name": "color", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "ok", "content": {"application/json": {
                        "schema": {"type": "object"}}}}}},
            "post": {"operationId": "addStock", "summary": "Add stock", "security": [{"partnerKey": []}],
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/Stock"}}}},
                     "responses": {"201": {"description": "created"}}},
        },
    },
}


class Running:
    def __init__(self, mcp: EmbeddedMcpServer, up: EchoUpstream, tools_dir: Path) -> None:
        self.mcp, self.up, self.tools_dir = mcp, up, tools_dir


def run_import(spec: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "link.cli", "import", "openapi", str(spec),
                           "--namespace", "demo", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    spec = tmp_path / "inventory.yaml"
    spec.write_text(yaml.safe_dump(STAND_IN_SPEC))
    tools_dir = tmp_path / "tools"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    # The importer names each secretRef after its security scheme.
    (secrets / "token").write_text("bearer-from-secret")
    (secrets / "partner-key").write_text("partner-secret")
    with EchoUpstream() as up:
        done = run_import(spec, tools_dir, "--base-url", up.url + "/v2", "--contract",
                          "--contract-out", str(tmp_path / "contracts"))
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert (tmp_path / "contracts" / "inventory.contract.yaml").is_file()
        s = settings(tmp_path, registry__source="files", registry__path=str(tools_dir),
                     registry__reload_interval_s=0.05, mcp__secrets_dir=str(secrets))
        async with EmbeddedMcpServer(s) as mcp:
            assert mcp.app.extras["registry"].errors() == {}
            yield Running(mcp, up, tools_dir)


async def test_imported_tools_are_listed_with_their_schemas_and_hints(running: Running) -> None:
    async with Client(running.mcp.url) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
    assert sorted(listed) == ["add-stock", "list-items"]
    add = listed["add-stock"]
    assert sorted(add.input_schema["required"]) == ["quantity", "sku", "warehouseId"]
    assert add.annotations is not None and add.annotations.read_only_hint is False
    get = listed["list-items"]
    assert get.annotations is not None and get.annotations.read_only_hint is True
    assert get.annotations.title == "List the items of a warehouse"


async def test_a_get_reaches_the_stand_in_with_path_query_and_bearer(running: Running) -> None:
    async with Client(running.mcp.url) as client:
        result = await client.call_tool("list-items", {"warehouseId": "north 1", "color": "red"})
    assert not result.is_error, result
    [seen] = running.up.requests
    assert (seen.method, seen.path) == ("GET", "/v2/warehouses/north%201/items?color=red")
    assert seen.headers["authorization"] == "Bearer bearer-from-secret"
    assert "x-partner-key" not in seen.headers


async def test_a_post_reaches_the_stand_in_with_the_json_body_and_the_api_key(running: Running) -> None:
    async with Client(running.mcp.url) as client:
        result = await client.call_tool("add-stock", {"warehouseId": "w7", "sku": "A-1", "quantity": 3})
    assert not result.is_error, result
    [seen] = running.up.requests
    assert (seen.method, seen.path) == ("POST", "/v2/warehouses/w7/items")
    assert json.loads(seen.body) == {"sku": "A-1", "quantity": 3}
    assert seen.headers["x-partner-key"] == "partner-secret"
    assert "authorization" not in seen.headers  # the operation's own security replaces the global one


async def test_arguments_the_spec_forbids_are_refused_before_the_stand_in(running: Running) -> None:
    async with Client(running.mcp.url) as client:
        with pytest.raises(MCPError, match="quantity"):  # quantity missing: the imported schema requires it
            await client.call_tool("add-stock", {"warehouseId": "w7", "sku": "A-1"})
        with pytest.raises(MCPError, match="quantity"):
            await client.call_tool("add-stock", {"warehouseId": "w7", "sku": "A-1", "quantity": "three"})
    assert running.up.requests == []
