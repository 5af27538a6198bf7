"""Shared helpers for the MCP server tests: manifests, a Link app with tools, API keys, a mock upstream."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from link.app import LinkApp
from link.events import RequestOutcome
from link.identity.apikeys import hash_api_key
from link.registry import ToolRegistry
from link.settings import Settings, load_settings

BASE: dict[str, Any] = {
    "server.grpc_address": "127.0.0.1:0",
    "server.admin_address": "127.0.0.1:0",
    "server.shutdown_grace_s": 1.0,
    "metering.enabled": False,
    "snapshots.enabled": False,
    "registry.source": "none",
    "policy.enabled": False,
    "mcp.port": 0,
}

# API keys used by the tests: key -> (tenant, consumer, scopes)
KEYS: dict[str, tuple[str, str, list[str]]] = {
    "key-acme": ("tenant-acme", "acme-app", ["tools"]),
    "key-beta": ("tenant-beta", "beta-app", []),
}


def tool(name: str, tenant: str = "demo", **spec: Any) -> dict[str, Any]:
    """A Tool manifest; ``endpoint`` defaults to an echo path on the mock upstream."""
    body: dict[str, Any] = {
        "displayName": name.replace("-", " ").title(),
        "description": f"The {name} tool",
        "endpoint": f"http://upstream.test/{name}",
        "method": "POST",
    }
    body.update(spec)
    return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "Tool",
            "metadata": {"name": name, "namespace": tenant}, "spec": body}


def write_api_keys(directory: Path) -> str:
    doc = {hash_api_key(k): {"tenant": t, "consumer": c, "scopes": s} for k, (t, c, s) in KEYS.items()}
    path = directory / "api-keys.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    merged: dict[str, Any] = {**BASE, "identity.api_keys_file": write_api_keys(tmp_path),
                              "mcp.public_tenants": ["demo"]}
    merged.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_settings(env={}, overrides=merged)


class RecordingSink:
    """An outcome sink that keeps what it is offered."""

    def __init__(self) -> None:
        self.outcomes: list[RequestOutcome] = []

    def offer(self, outcome: RequestOutcome) -> None:
        self.outcomes.append(outcome)


def link_app(s: Settings, manifests: list[dict[str, Any]]) -> tuple[LinkApp, ToolRegistry, RecordingSink]:
    app = LinkApp(s)
    registry: ToolRegistry = app.extras["registry"]
    for m in manifests:
        err = registry.apply(m)
        assert err is None, err
    sink = RecordingSink()
    app.add_outcome_sink(sink)
    return app, registry, sink


@dataclass
class Seen:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class MockUpstream:
    """An httpx transport that records requests and answers via ``respond`` (default: echo as JSON)."""

    seen: list[Seen] = field(default_factory=list)
    respond: Callable[[httpx.Request], httpx.Response] | None = None

    def transport(self) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            self.seen.append(Seen(request.method, str(request.url), dict(request.headers), request.content))
            if self.respond is not None:
                return self.respond(request)
            return httpx.Response(200, json={"method": request.method, "url": str(request.url),
                                             "body": json.loads(request.content) if request.content else None})

        return httpx.MockTransport(handler)
