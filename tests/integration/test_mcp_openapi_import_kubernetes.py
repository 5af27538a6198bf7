"""OpenAPIImport from a cluster, end to end: an object on the local server speaking the Kubernetes
list/watch protocol, read by the MCP server through a kubeconfig (the production client path), its
Tools called over Streamable HTTP with the SDK client; they change and go with the object."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp.client import Client

from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.kube_api import FakeKubeApi
from tests.harness.upstream import EchoUpstream
from tests.integration.test_mcp_openapi_import import STAND_IN_SPEC
from tests.unit.mcp_server.support import settings

pytestmark = pytest.mark.integration


def entry(spec: dict[str, Any], base_url: str) -> dict[str, Any]:
    return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "OpenAPIImport",
            "metadata": {"name": "inventory", "namespace": "demo"},
            "spec": {"openapi": {"document": spec}, "baseUrl": base_url}}


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "local", "cluster": {"server": server}}],
        "users": [{"name": "stoa-link", "user": {"token": "unused"}}],
        "contexts": [{"name": "test", "context": {"cluster": "local", "user": "stoa-link"}}],
    }))
    return path


async def listed(url: str) -> list[str]:
    async with Client(url) as client:
        return sorted(t.name for t in (await client.list_tools()).tools)


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_cluster_openapiimport_is_callable_over_mcp_and_follows_the_object(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "token").write_text("bearer-from-secret")
    (secrets / "partner-key").write_text("partner-secret")
    with EchoUpstream() as up, FakeKubeApi() as kube:
        kube.apply(entry(STAND_IN_SPEC, up.url + "/v2"))
        s = settings(tmp_path, registry__source="kubernetes",
                     registry__kubeconfig=str(kubeconfig(tmp_path / "kubeconfig", kube.url)),
                     mcp__secrets_dir=str(secrets))
        async with EmbeddedMcpServer(s) as mcp:
            assert await listed(mcp.url) == ["add-stock", "list-items"]
            async with Client(mcp.url) as client:
                result = await client.call_tool("list-items", {"warehouseId": "w1", "color": "red"})
            assert not result.is_error, result
            [seen] = up.requests
            assert (seen.method, seen.path) == ("GET", "/v2/warehouses/w1/items?color=red")
            assert seen.headers["authorization"] == "Bearer bearer-from-secret"

            # A new version of the object: one operation gone, one added; MCP clients see it.
            spec = copy.deepcopy(STAND_IN_SPEC)
            items = spec["paths"]["/warehouses/{warehouseId}/items"]
            del items["post"]
            items["delete"] = {"operationId": "clearItems", "summary": "Clear the warehouse",
                               "responses": {"204": {"description": "cleared"}}}
            kube.apply(entry(spec, up.url + "/v2"))

            async def changed() -> bool:
                return await listed(mcp.url) == ["clear-items", "list-items"]

            await until(changed, "the new version's tools")
            obj = kube.get("OpenAPIImport", "demo", "inventory") or {}
            status = obj.get("status") or {}
            assert (status.get("ready"), status.get("tools")) == (True, ["clear-items", "list-items"])

            # Deleted: its tools are gone.
            kube.delete("OpenAPIImport", "demo", "inventory")

            async def gone() -> bool:
                return await listed(mcp.url) == []

            await until(gone, "the tools to go")
