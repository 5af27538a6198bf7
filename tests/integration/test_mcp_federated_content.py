"""Completion and resource subscriptions of a federated MCP server, through the real gateway, to SDK clients.

The upstream is the conformance suite's fixture server built with the MCP SDK
(tests/conformance/sdk_fixture.py), federated by a ToolSet under a prefix. Completion of a federated
prompt or resource template comes from the upstream; a subscription to a federated resource is held
upstream by Link (once per URI, dropped when the last client unsubscribes) and the upstream's
``notifications/resources/updated`` reaches exactly the clients that subscribed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
import yaml
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcp_server.embedded import EmbeddedMcpServer
from tests.conformance.sdk_fixture import SuiteFixture, build_fixture
from tests.harness.mcp_registry import eventually, toolset_manifest
from tests.harness.mcp_upstreams import serve_asgi
from tests.unit.mcp_server.support import settings

pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]

TENANT = "tenant-acme"
WATCHED = "test://watched-resource"



def _settings(tmp_path: Path, url: str, timeout_s: float = 10, **overrides: Any) -> Any:
    """The gateway's settings with one ToolSet ``fx`` (prefix ``fx_``) federating the fixture at ``url``."""
    sets = tmp_path / "sets"
    sets.mkdir(exist_ok=True)
    (sets / "set.yaml").write_text(yaml.safe_dump(toolset_manifest("fx", TENANT, url, timeout_s=timeout_s, prefix="fx_")))
    return settings(tmp_path, registry__source="files", registry__path=str(sets), mcp__json_response=False,
                    **overrides)


class Setup:
    def __init__(self, gateway: EmbeddedMcpServer, fixture: SuiteFixture) -> None:
        self.gateway = gateway
        self.fixture = fixture


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    fixture = build_fixture()
    async with serve_asgi(fixture.server.streamable_http_app(host="127.0.0.1"), "on") as url:
        s = _settings(tmp_path, url)
        async with EmbeddedMcpServer(s) as gateway:
            federation = gateway.app.extras["federation"]
            await eventually(lambda: bool(federation.prompts(TENANT)) and bool(federation.resources(TENANT)))
            yield Setup(gateway, fixture)


class Updates:
    """The ``notifications/resources/updated`` one client received."""

    def __init__(self) -> None:
        self.uris: list[str] = []

    async def __call__(self, message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.uris.append(str(message.params.uri))


@contextlib.asynccontextmanager
async def client(setup: Setup, key: str, updates: Updates | None = None) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"x-api-key": key}, timeout=30)
    extra: dict[str, Any] = {"message_handler": updates} if updates is not None else {}
    async with Client(streamable_http_client(setup.gateway.url, http_client=http), mode="legacy", cache=None,
                      **extra) as c:
        yield c


def prompt_ref(name: str) -> types.PromptReference:
    return types.PromptReference(type="ref/prompt", name=name)


def template_ref(uri: str) -> types.ResourceTemplateReference:
    return types.ResourceTemplateReference(type="ref/resource", uri=uri)


@pytest.mark.parametrize(("ref", "argument", "value", "expected"), [
    (prompt_ref("fx_test_prompt_with_arguments"), "arg1", "te", ["test", "testing", "tested"]),
    (prompt_ref("fx_test_prompt_with_arguments"), "arg1", "", ["test", "testing", "tested", "other"]),
    (prompt_ref("fx_test_prompt_with_arguments"), "arg2", "x", []),  # the upstream has none for arg2
    (template_ref("test://template/{id}/data"), "id", "12", ["123", "124"]),
])
async def test_completion_of_a_federated_entry_comes_from_the_upstream(
        setup: Setup, ref: Any, argument: str, value: str, expected: list[str]) -> None:
    async with client(setup, "key-acme") as c:
        result = await c.complete(ref, {"name": argument, "value": value})
    assert result.completion.values == expected


@pytest.mark.parametrize(("key", "ref"), [
    ("key-acme", prompt_ref("test_prompt_with_arguments")),  # the remote name, without the set's prefix
    ("key-acme", prompt_ref("fx_no_such_prompt")),
    ("key-beta", prompt_ref("fx_test_prompt_with_arguments")),  # another tenant's set
    ("key-acme", template_ref("other://template/{id}")),
    ("key-beta", template_ref("test://template/{id}/data")),
])
async def test_completion_of_what_the_caller_has_no_such_entry_is_refused(setup: Setup, key: str, ref: Any) -> None:
    async with client(setup, key) as c:
        with pytest.raises(MCPError, match=r"Unknown prompt|Resource not found"):
            await c.complete(ref, {"name": "arg1", "value": ""})


async def test_an_upstream_resource_update_reaches_exactly_the_subscribed_clients(setup: Setup) -> None:
    fixture = setup.fixture
    a, b, other = Updates(), Updates(), Updates()
    async with client(setup, "key-acme", a) as ca, client(setup, "key-acme", b) as cb, \
            client(setup, "key-acme", other) as co:
        await co.list_resources()  # connected, not subscribed
        await ca.subscribe_resource(WATCHED)
        await cb.subscribe_resource(WATCHED)
        assert len(fixture.subscribers[WATCHED]) == 1  # Link holds one upstream subscription for both
        assert await fixture.touch(WATCHED) == 1
        await eventually(lambda: a.uris == [WATCHED] and b.uris == [WATCHED])
        await ca.unsubscribe_resource(WATCHED)
        assert len(fixture.subscribers[WATCHED]) == 1  # b still watches it
        await fixture.touch(WATCHED)
        await eventually(lambda: b.uris == [WATCHED, WATCHED])
        await cb.unsubscribe_resource(WATCHED)
        await eventually(lambda: not fixture.subscribers[WATCHED])  # the last one gone: dropped upstream
        assert a.uris == [WATCHED] and other.uris == []


async def test_a_client_gone_without_unsubscribing_releases_the_upstream_subscription(tmp_path: Path) -> None:
    """Nobody unsubscribes: the client's connection just ends. At the set's next ping Link finds that no
    connection watches the URI any more and drops its upstream subscription (no leak until a reconnect)."""
    fixture = build_fixture()
    async with serve_asgi(fixture.server.streamable_http_app(host="127.0.0.1"), "on") as url:
        s = _settings(tmp_path, url, 5, mcp__federation_ping_interval_s=0.2)
        async with EmbeddedMcpServer(s) as gateway:
            federation = gateway.app.extras["federation"]
            await eventually(lambda: bool(federation.resources(TENANT)))
            setup = Setup(gateway, fixture)
            async with client(setup, "key-acme") as stayer:
                await stayer.subscribe_resource("test://static-text")
                async with client(setup, "key-acme") as leaver:
                    await leaver.subscribe_resource(WATCHED)
                    assert fixture.subscribers.get(WATCHED)
                for _ in range(3):  # the session's task may hold the connection for a moment
                    gc.collect()
                    await asyncio.sleep(0.1)
                await eventually(lambda: not fixture.subscribers.get(WATCHED), within=10)
                assert fixture.subscribers.get("test://static-text")  # still watched: kept


@pytest.mark.parametrize(("key", "uri"), [
    ("key-acme", "test://no-such-resource"),  # no set serves it
    ("key-beta", WATCHED),  # another tenant's set serves it
])
async def test_a_subscription_to_what_no_set_of_the_caller_serves_is_refused(setup: Setup, key: str, uri: str) -> None:
    async with client(setup, key) as c:
        with pytest.raises(MCPError, match="Resource not found"):
            await c.subscribe_resource(uri)
    assert not setup.fixture.subscribers.get(uri)


async def test_a_reconnected_toolset_renews_the_subscriptions_its_clients_still_hold(tmp_path: Path) -> None:
    """The upstream restarts (same address, no memory of subscriptions): Link renews the subscription a
    client still holds on its new discovery session, so that client keeps getting updates; a URI whose
    last client unsubscribed, or went away, before the restart is not renewed."""
    first = build_fixture()
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(serve_asgi(first.server.streamable_http_app(host="127.0.0.1"), "on"))
        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        s = _settings(tmp_path, url, 5, mcp__federation_backoff_initial_s=0.1, mcp__federation_backoff_max_s=0.3,
                      mcp__federation_ping_interval_s=0.2)
        async with EmbeddedMcpServer(s) as gateway:
            federation = gateway.app.extras["federation"]
            await eventually(lambda: bool(federation.resources(TENANT)))
            setup = Setup(gateway, first)
            updates = Updates()
            async with client(setup, "key-acme", updates) as watcher, client(setup, "key-acme") as quitter:
                await watcher.subscribe_resource(WATCHED)
                await quitter.subscribe_resource("test://static-text")
                await quitter.unsubscribe_resource("test://static-text")
                async with client(setup, "key-acme") as leaver:  # leaves without unsubscribing
                    await leaver.subscribe_resource("test://static-binary")
                gc.collect()  # its connection is gone once collected (the notifier holds it weakly)
                await stack.aclose()  # the upstream goes away
                await eventually(lambda: not gateway.app.extras["registry"].toolset_status(TENANT, "fx").connected)
                second = build_fixture()
                async with serve_asgi(second.server.streamable_http_app(host="127.0.0.1"), "on", port=port):
                    await eventually(lambda: bool(second.subscribers.get(WATCHED)))
                    assert not second.subscribers.get("test://static-text")
                    assert not second.subscribers.get("test://static-binary")
                    assert await second.touch(WATCHED) == 1
                    await eventually(lambda: updates.uris == [WATCHED])
