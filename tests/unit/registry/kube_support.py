"""Helpers of the Kubernetes source tests: manifests, a client for the local API server, bounded waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes import client as k8s_client

from link.registry.kubernetes import KubernetesSource
from link.registry.kubernetes.source import WATCHED_KINDS
from link.registry.registry import ToolRegistry
from tests.harness.kube_api import FakeKubeApi

TOKEN = "test-token"
ALL_TOOLS = "tools in all namespaces"


def tool(name: str, ns: str = "acme", **spec: Any) -> dict[str, Any]:
    body = {"displayName": name.title(), "description": f"The {name} tool",
            "endpoint": "https://api.example/items/{id}", "method": "GET",
            "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}}
    body.update(spec)
    return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "Tool",
            "metadata": {"name": name, "namespace": ns}, "spec": body}


def toolset(name: str, ns: str = "acme", **spec: Any) -> dict[str, Any]:
    body = {"upstream": {"url": "https://mcp.example/mcp"}, "prefix": "kb_"}
    body.update(spec)
    return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "ToolSet",
            "metadata": {"name": name, "namespace": ns}, "spec": body}


def client_for(api: FakeKubeApi, token: str = TOKEN) -> k8s_client.ApiClient:
    cfg = k8s_client.Configuration()
    cfg.host = api.url
    cfg.api_key = {"BearerToken": token}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    return k8s_client.ApiClient(cfg)


async def eventually(predicate: Callable[[], Any], within: float = 10.0, what: str = "") -> None:
    """Poll until ``predicate()`` is truthy (bounded); the source works in threads, so just yield."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


async def quiet(src: KubernetesSource, kube: FakeKubeApi) -> None:
    """Both watches open, status written, and the write's own event seen: nothing more will happen."""
    await eventually(lambda: kube.open_watches() == len(WATCHED_KINDS))
    await eventually(lambda: not src.status_writes_pending()
                     and src.resource_versions()[ALL_TOOLS] == str(kube.resource_version), what="quiet")


def names(registry: ToolRegistry, tenant: str = "acme") -> list[str]:
    return [t.name for t in registry.tools(tenant)]


def status(api: FakeKubeApi, kind: str, name: str, ns: str = "acme") -> dict[str, Any]:
    obj = api.get(kind, ns, name)
    return dict((obj or {}).get("status") or {})


Factory = Callable[..., Awaitable[tuple[KubernetesSource, ToolRegistry]]]
