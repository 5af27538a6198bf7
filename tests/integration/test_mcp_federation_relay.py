"""The federation relays the protocol, through the real gateway, to real SDK clients.

An SDK-built upstream MCP server is federated by a ToolSet; clients are the SDK's own client over
Streamable HTTP, answering sampling and elicitation. Each relay is asserted end to end (progress,
logs, sampling, elicitation, cancellation), isolation between concurrent callers, and that a hostile
upstream (sampling asked of a client that cannot answer, garbage, wrong ids, streams closed mid-call,
stalls, notification floods) never takes the ToolSet away from other callers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
import yaml
from mcp.client import Client
from mcp.client.session import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from link.identity.apikeys import hash_api_key
from link.registry import ToolRegistry
from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.mcp_registry import eventually, toolset_manifest
from tests.harness.mcp_upstreams import HOSTILE_TOOLS, Served, hostile_upstream, sdk_upstream
from tests.unit.mcp_server.support import settings

pytestmark = pytest.mark.integration

TENANT = "tenant-acme"
KEYS = {"key-a": "caller-a", "key-b": "caller-b"}  # two consumers of the same tenant


def _toolset(name: str, url: str, prefix: str, timeout: float) -> dict[str, Any]:
    return toolset_manifest(name, TENANT, url, timeout_s=timeout, prefix=prefix)



class Setup:
    def __init__(self, gateway: EmbeddedMcpServer, sdk: Served) -> None:
        self.gateway = gateway
        self.sdk = sdk


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with sdk_upstream() as sdk, hostile_upstream() as evil:
        sets = tmp_path / "sets"
        sets.mkdir()
        (sets / "sets.yaml").write_text(yaml.safe_dump_all([
            _toolset("sdk", sdk.url, "sdk_", 10), _toolset("evil", evil.url, "evil_", 1)]))
        keys = tmp_path / "keys.yaml"
        keys.write_text(yaml.safe_dump({hash_api_key(k): {"tenant": TENANT, "consumer": c, "scopes": []}
                                        for k, c in KEYS.items()}))
        s = settings(tmp_path, registry__source="files", registry__path=str(sets),
                     identity__api_keys_file=str(keys), mcp__json_response=False,
                     mcp__federation_backoff_initial_s=0.1,
                     mcp__federation_backoff_max_s=0.3, mcp__federation_ping_interval_s=0.2)
        async with EmbeddedMcpServer(s) as gateway:
            registry: ToolRegistry = gateway.app.extras["registry"]
            await eventually(lambda: len(registry.tools(TENANT)) == 7 + len(HOSTILE_TOOLS))
            yield Setup(gateway, sdk)


class Answers:
    """A client's sampling / elicitation callbacks, recording what they were asked."""

    def __init__(self, who: str) -> None:
        self.who = who
        self.asked: list[str] = []
        self.logs: list[Any] = []
        self.cancelled: list[str] = []

    async def sampling(self, context: ClientRequestContext,
                       params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        content = params.messages[0].content
        prompt = content.text if isinstance(content, types.TextContent) else ""
        self.asked.append(prompt)
        if prompt == "slow":
            try:
                await asyncio.sleep(20)
            except asyncio.CancelledError:
                self.cancelled.append(prompt)
                raise
        return types.CreateMessageResult(role="assistant", model="test-model",
                                         content=types.TextContent(type="text", text=f"hello from {self.who}"))

    async def elicitation(self, context: ClientRequestContext,
                          params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(params.message)
        await asyncio.sleep(0.2)  # keeps both callers' elicitations in flight together
        return types.ElicitResult(action="accept", content={"confirm": self.who == "A"})

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params.data)


@contextlib.asynccontextmanager
async def client(setup: Setup, key: str, answers: Answers | None = None) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers={"x-api-key": key}, timeout=30)
    callbacks: dict[str, Any] = {}
    if answers is not None:
        callbacks = {"sampling_callback": answers.sampling, "elicitation_callback": answers.elicitation,
                     "logging_callback": answers.log}
    async with Client(streamable_http_client(setup.gateway.url, http_client=http), mode="legacy",
                      cache=None, **callbacks) as c:
        yield c


def text(result: types.CallToolResult) -> str:
    first = result.content[0]
    return first.text if isinstance(first, types.TextContent) else ""


async def test_progress_and_log_messages_reach_the_caller(setup: Setup) -> None:
    answers = Answers("A")
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append((p, total, message))

    async with client(setup, "key-a", answers) as c:
        result = await c.call_tool("sdk_progress_and_log", {"steps": 3}, progress_callback=on_progress)
    assert not result.is_error, result
    assert text(result) == "done"
    assert progress == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    assert answers.logs == ["did step 1", "did step 2", "did step 3"]


async def test_sampling_and_elicitation_are_asked_of_the_caller_and_answered_back(setup: Setup) -> None:
    answers = Answers("A")
    async with client(setup, "key-a", answers) as c:
        sampled = await c.call_tool("sdk_ask_model", {"prompt": "what is 2+2"})
        elicited = await c.call_tool("sdk_ask_user", {"question": "really?"})
    assert text(sampled) == "model said: hello from A"
    assert text(elicited) == "accept:True"
    assert answers.asked == ["what is 2+2", "really?"]
    assert setup.sdk.answers == ["hello from A", "accept"]


@pytest.mark.parametrize("tool", ["sdk_ask_model", "sdk_ask_user"])
async def test_a_caller_without_the_capability_gets_a_clean_tool_error(setup: Setup, tool: str) -> None:
    async with client(setup, "key-b") as c:  # declares neither sampling nor elicitation
        result = await c.call_tool(tool, {"prompt": "x", "question": "x"})
        assert result.is_error
        assert "does not accept" in text(result) or "capab" in text(result).lower(), text(result)
        # The ToolSet is untouched: the same caller's next call works.
        assert text(await c.call_tool("sdk_echo", {"text": "still here"})) == "still here"
    assert setup.sdk.answers == []


async def test_concurrent_callers_each_get_only_their_own_elicitation(setup: Setup) -> None:
    a, b = Answers("A"), Answers("B")
    async with client(setup, "key-a", a) as ca, client(setup, "key-b", b) as cb:
        ra, rb = await asyncio.gather(ca.call_tool("sdk_ask_user", {"question": "for A"}),
                                      cb.call_tool("sdk_ask_user", {"question": "for B"}))
    assert a.asked == ["for A"]
    assert b.asked == ["for B"]
    assert text(ra) == "accept:True"
    assert text(rb) == "accept:False"


async def test_cancelling_the_call_cancels_the_upstream_request(setup: Setup) -> None:
    async with client(setup, "key-a", Answers("A")) as c:
        call = asyncio.create_task(c.call_tool("sdk_stall", {"seconds": 30}))
        await asyncio.sleep(1.0)
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        await eventually(lambda: setup.sdk.cancelled == ["stall"])
        assert text(await c.call_tool("sdk_echo", {"text": "after"})) == "after"


async def test_the_upstream_giving_up_cancels_the_request_relayed_to_the_caller(setup: Setup) -> None:
    answers = Answers("A")
    async with client(setup, "key-a", answers) as c:
        result = await c.call_tool("sdk_ask_model_impatiently", {"prompt": "slow"})
        assert text(result).startswith("gave up: "), text(result)
        # The upstream's notifications/cancelled reached the caller: its sampling callback was cancelled.
        await eventually(lambda: answers.cancelled == ["slow"])
        assert text(await c.call_tool("sdk_echo", {"text": "after"})) == "after"


async def test_relayed_notifications_are_capped_per_call(setup: Setup) -> None:
    answers = Answers("A")
    async with client(setup, "key-a", answers) as c:
        result = await c.call_tool("sdk_flood", {"count": 600})
    assert text(result) == "flooded"
    assert len(answers.logs) == 256  # RelayLimits.max_notifications


async def test_a_hostile_upstream_never_takes_the_toolset_from_other_callers(setup: Setup) -> None:
    registry: ToolRegistry = setup.gateway.app.extras["registry"]
    expected = len(registry.tools(TENANT))
    stop = asyncio.Event()
    attacks: dict[str, list[bool]] = {}
    served: list[str] = []

    async def attacker() -> None:
        async with client(setup, "key-a") as c:  # no sampling/elicitation: every ask is refused
            for _ in range(3):
                calls = [c.call_tool(f"evil_{t}", {}) for t in HOSTILE_TOOLS]
                calls += [c.call_tool("sdk_ask_model", {"prompt": "x"}), c.call_tool("sdk_ask_user",
                                                                                     {"question": "x"})]
                for name, r in zip([*HOSTILE_TOOLS, "ask_model", "ask_user"],
                                   await asyncio.gather(*calls, return_exceptions=True), strict=True):
                    attacks.setdefault(name, []).append(isinstance(r, types.CallToolResult) and r.is_error)
        stop.set()

    async def bystander() -> None:
        async with client(setup, "key-b", Answers("B")) as c:
            while not stop.is_set():
                listed = {t.name for t in (await c.list_tools()).tools}
                assert len(listed) == expected, listed
                assert registry.toolset_status(TENANT, "sdk").connected
                served.append(text(await c.call_tool("sdk_echo", {"text": "ok"})))
                served.append(text(await c.call_tool("sdk_ask_model", {"prompt": "b"})))

    await asyncio.wait_for(asyncio.gather(attacker(), bystander()), 60)
    # Every hostile call failed cleanly, as a tool error for the attacker alone.
    assert attacks == {name: [True, True, True] for name in attacks}, attacks
    assert len(attacks) == len(HOSTILE_TOOLS) + 2
    assert served and set(served) <= {"ok", "model said: hello from B"}
    assert registry.toolset_status(TENANT, "sdk").connected
    assert registry.toolset_status(TENANT, "evil").connected


async def test_clean_call_sessions_are_reused_and_spoiled_ones_are_not(setup: Setup) -> None:
    federation = setup.gateway.app.extras["federation"]
    async with client(setup, "key-a", Answers("A")) as c:
        for _ in range(3):
            assert text(await c.call_tool("sdk_echo", {"text": "x"})) == "x"
        assert federation.call_sessions_opened(TENANT, "sdk") == 1
        async with client(setup, "key-b") as refused:  # its sampling refusal fails the upstream's tool
            assert (await refused.call_tool("sdk_ask_model", {"prompt": "x"})).is_error
        assert text(await c.call_tool("sdk_ask_model", {"prompt": "y"})) == "model said: hello from A"
        for name in ("evil_garbage", "evil_garbage"):
            assert (await c.call_tool(name, {})).is_error
        before = federation.call_sessions_opened(TENANT, "evil")
        assert (await c.call_tool("evil_wrong_id", {})).is_error
        assert federation.call_sessions_opened(TENANT, "evil") == before + 1  # a spoiled session is never reused


async def test_upstream_resources_and_prompts_are_federated_with_the_prefix(setup: Setup) -> None:
    federation = setup.gateway.app.extras["federation"]
    assert [(r["uri"], r["name"]) for r in federation.resources(TENANT)] == [("doc://guide", "sdk_guide")]
    assert [(t["uriTemplate"], t["name"]) for t in federation.resource_templates(TENANT)] == [
        ("doc://items/{item}", "sdk_item")]
    assert [p["name"] for p in federation.prompts(TENANT)] == ["sdk_greet"]
    guide = await federation.read_resource(TENANT, "doc://guide")
    assert guide["contents"][0]["text"] == "read the guide"
    item = await federation.read_resource(TENANT, "doc://items/42")
    assert item["contents"][0]["text"] == "item 42"
    prompt = await federation.get_prompt(TENANT, "sdk_greet", {"who": "Ada"})
    assert prompt["messages"][0]["content"]["text"] == "Say hello to Ada."
    # Nothing of another tenant, nothing unknown, nothing under the remote (unprefixed) name.
    assert federation.resources("tenant-beta") == [] and federation.prompts("tenant-beta") == []
    assert await federation.read_resource("tenant-beta", "doc://guide") is None
    assert await federation.read_resource(TENANT, "other://guide") is None
    assert await federation.get_prompt(TENANT, "greet", {"who": "x"}) is None
    # Narrowed to one set (a virtual server): the hostile set has no resources or prompts.
    assert federation.resources(TENANT, "evil") == [] and federation.prompts(TENANT, "evil") == []
    assert await federation.read_resource(TENANT, "doc://guide", "evil") is None
    assert [p["name"] for p in federation.prompts(TENANT, "sdk")] == ["sdk_greet"]


async def test_with_json_answers_a_relayed_request_is_refused_cleanly(tmp_path: Path) -> None:
    """``mcp.json_response: true`` (the default) has no stream to carry a server request: the
    upstream's sampling request is refused at once, the call fails for that caller, the set stays."""
    async with sdk_upstream() as sdk:
        sets = tmp_path / "sets"
        sets.mkdir()
        (sets / "s.yaml").write_text(yaml.safe_dump(_toolset("sdk", sdk.url, "sdk_", 10)))
        s = settings(tmp_path, registry__source="files", registry__path=str(sets))
        async with EmbeddedMcpServer(s) as gateway:
            registry: ToolRegistry = gateway.app.extras["registry"]
            await eventually(lambda: registry.toolset_status(TENANT, "sdk").connected)
            answers = Answers("A")
            http = httpx2.AsyncClient(headers={"x-api-key": "key-acme"}, timeout=30)
            async with Client(streamable_http_client(gateway.url, http_client=http), mode="legacy", cache=None,
                              sampling_callback=answers.sampling) as c:
                refused = await c.call_tool("sdk_ask_model", {"prompt": "x"})
                assert refused.is_error and answers.asked == []
                assert text(await c.call_tool("sdk_echo", {"text": "ok"})) == "ok"


async def test_federated_resources_and_prompts_are_served_over_mcp(setup: Setup) -> None:
    """The upstream's resources, templates and prompts reach an MCP client under the set's prefix, through
    the pipeline (metered), beside the registry's own entries; another tenant sees none of them."""
    key = next(iter(KEYS))
    async with client(setup, key) as c:
        resources = await c.list_resources()
        assert ("doc://guide", "sdk_guide") in [(str(r.uri), r.name) for r in resources.resources]
        templates = await c.list_resource_templates()
        assert "doc://items/{item}" in [t.uri_template for t in templates.resource_templates]
        guide = await c.read_resource("doc://guide")
        assert guide.contents[0].text == "read the guide"  # type: ignore[union-attr]
        item = await c.read_resource("doc://items/7")
        assert item.contents[0].text == "item 7"  # type: ignore[union-attr]
        prompts = await c.list_prompts()
        assert "sdk_greet" in [p.name for p in prompts.prompts]
        got = await c.get_prompt("sdk_greet", {"who": "Ada"})
        assert got.messages[0].content.text == "Say hello to Ada."  # type: ignore[union-attr]
        with pytest.raises(Exception, match=r"not found|Unknown"):
            await c.read_resource("doc://nothing-here")
