"""Virtual servers serve a curated set of resources and prompts too, through the real MCP server.

A ToolSet's ``spec.resources`` and ``spec.prompts`` select (and rename) what its SDK-built upstream
offers, on ``/mcp`` as on the set's own endpoint; ``spec.include`` adds registry Tools, Resources
and Prompts of the set's tenant to ``/mcp/v/{name}``. Everything else of the tenant is absent there:
not listed, and reading, getting, completing or subscribing to it answers as for an unknown entry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
import yaml
from mcp.shared.exceptions import MCPError

from link.registry import ToolRegistry
from mcp_server.content import RESOURCE_NOT_FOUND
from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.mcp_registry import api_key_client, eventually, toolset_manifest
from tests.harness.mcp_upstreams import sdk_upstream
from tests.unit.mcp_server.support import RecordingSink, settings, tool

pytestmark = pytest.mark.integration



def _resource(name: str, tenant: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "Resource",
            "metadata": {"name": name, "namespace": tenant}, "spec": {"description": f"The {name}", **spec}}


def _prompt(name: str, tenant: str, **spec: Any) -> dict[str, Any]:
    body = {"description": f"The {name}",
            "messages": [{"role": "user", "content": {"type": "text", "text": "Welcome {{who}}"}}],
            "arguments": [{"name": "who", "required": True, "completions": ["alice", "alfred", "bob"]}]}
    body.update(spec)
    return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "Prompt",
            "metadata": {"name": name, "namespace": tenant}, "spec": body}



@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[EmbeddedMcpServer]:
    async with sdk_upstream() as sdk:
        reg = tmp_path / "reg"
        reg.mkdir()
        (reg / "all.yaml").write_text(yaml.safe_dump_all([
            toolset_manifest("support", "tenant-acme", sdk.url, serve=True, prefix="sup_",
                     tools=[{"name": "echo"}],
                     resources=[{"uri": "doc://guide"}],  # the template doc://items/{item} is left out
                     prompts=[{"name": "greet", "alias": "hello"}],
                     include={"tools": ["local-search"], "resources": ["handbook"], "prompts": ["onboarding"]}),
            toolset_manifest("everything", "tenant-acme", sdk.url, prefix="all_"),  # not served; all of it on /mcp
            toolset_manifest("support", "tenant-beta", sdk.url, serve=True, prefix="beta_", tools=[{"name": "echo"}],
                     prompts=[{"name": "greet", "enabled": False}], include={"resources": ["handbook"]}),
            tool("local-search", tenant="tenant-acme", endpoint="http://127.0.0.1:9/x"),
            tool("local-other", tenant="tenant-acme", endpoint="http://127.0.0.1:9/x"),
            _resource("handbook", "tenant-acme", uri="acme://handbook", text="acme's handbook"),
            _resource("ledger", "tenant-acme", uri="acme://ledger", text="acme's ledger"),
            _prompt("onboarding", "tenant-acme"),
            _prompt("offboarding", "tenant-acme"),
        ]))
        s = settings(tmp_path, registry__source="files", registry__path=str(reg))
        async with EmbeddedMcpServer(s) as server:
            registry: ToolRegistry = server.app.extras["registry"]
            sets_ = [("tenant-acme", "support"), ("tenant-acme", "everything"), ("tenant-beta", "support")]
            await eventually(lambda: all(registry.toolset_status(t, n).connected for t, n in sets_))
            yield server



def _text(result: Any) -> str:
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents)
    return content.text


async def test_a_virtual_server_lists_only_its_curated_and_included_entries(gateway: EmbeddedMcpServer) -> None:
    async with api_key_client(gateway, "/mcp/v/support", "key-acme") as c:
        assert sorted(t.name for t in (await c.list_tools()).tools) == ["local-search", "sup_echo"]
        assert sorted(str(r.uri) for r in (await c.list_resources()).resources) == ["acme://handbook", "doc://guide"]
        assert (await c.list_resource_templates()).resource_templates == []
        assert sorted(p.name for p in (await c.list_prompts()).prompts) == ["hello", "onboarding"]


async def test_a_virtual_server_reads_gets_and_completes_what_it_serves(gateway: EmbeddedMcpServer) -> None:
    sink = RecordingSink()
    gateway.app.bus.add(sink)
    async with api_key_client(gateway, "/mcp/v/support", "key-acme") as c:
        assert _text(await c.read_resource("doc://guide")) == "read the guide"
        assert _text(await c.read_resource("acme://handbook")) == "acme's handbook"
        hello = await c.get_prompt("hello", {"who": "Ada"})
        assert isinstance(hello.messages[0].content, types.TextContent)
        assert "Say hello to Ada." in hello.messages[0].content.text
        onboarding = await c.get_prompt("onboarding", {"who": "Ada"})
        assert isinstance(onboarding.messages[0].content, types.TextContent)
        assert onboarding.messages[0].content.text == "Welcome Ada"
        done = await c.complete(types.PromptReference(type="ref/prompt", name="onboarding"),
                                {"name": "who", "value": "al"})
        assert done.completion.values == ["alice", "alfred"]
    # Metered like /mcp: each read and get is one outcome in the set's tenant.
    served = [o for o in sink.outcomes if o.source == "mcp"]
    assert sorted(o.tool for o in served) == ["handbook", "hello", "onboarding", "sup_guide"], served
    assert len(served) == 4 and {o.tenant for o in served} == {"tenant-acme"}
    assert all(o.outcome.value == "success" for o in served)


@pytest.mark.parametrize("uri", [
    "acme://ledger",  # the tenant's, not included
    "doc://items/1",  # the upstream's template, not selected
    "doc://unknown",
])
async def test_a_virtual_server_answers_not_found_for_what_it_does_not_serve(gateway: EmbeddedMcpServer,
                                                                           uri: str) -> None:
    async with api_key_client(gateway, "/mcp/v/support", "key-acme") as c:
        with pytest.raises(MCPError) as err:
            await c.read_resource(uri)
        assert err.value.error.code == RESOURCE_NOT_FOUND
        with pytest.raises(MCPError) as err:
            await c.subscribe_resource(uri)
        assert err.value.error.code == RESOURCE_NOT_FOUND
    async with api_key_client(gateway, "/mcp", "key-acme") as full:  # where the tenant's /mcp serves them
        if uri != "doc://unknown":
            assert _text(await full.read_resource(uri))


@pytest.mark.parametrize("name", ["offboarding", "all_greet", "sup_greet", "greet"])
async def test_a_virtual_server_knows_no_other_prompt(gateway: EmbeddedMcpServer, name: str) -> None:
    async with api_key_client(gateway, "/mcp/v/support", "key-acme") as c:
        with pytest.raises(MCPError, match="Unknown prompt"):
            await c.get_prompt(name, {"who": "x"})
        with pytest.raises(MCPError, match="Unknown prompt"):
            await c.complete(types.PromptReference(type="ref/prompt", name=name), {"name": "who", "value": ""})


async def test_a_virtual_server_refuses_tools_it_does_not_include(gateway: EmbeddedMcpServer) -> None:
    async with api_key_client(gateway, "/mcp/v/support", "key-acme") as c:
        for outside in ("local-other", "all_echo", "beta_echo"):
            with pytest.raises(MCPError, match="Unknown tool"):
                await c.call_tool(outside, {"text": "x"})
        # An included local tool is called (its upstream is down: a tool error, not an unknown tool).
        result = await c.call_tool("local-search", {"q": "x"})
        assert result.is_error


async def test_the_selection_applies_on_mcp_and_inclusion_only_on_the_virtual_server(
    gateway: EmbeddedMcpServer,
) -> None:
    async with api_key_client(gateway, "/mcp", "key-acme") as full:
        prompts = {p.name for p in (await full.list_prompts()).prompts}
        assert {"hello", "all_greet", "onboarding", "offboarding"} <= prompts and "sup_greet" not in prompts
        templates = (await full.list_resource_templates()).resource_templates
        assert [t.name for t in templates] == ["all_item"]  # from "everything"; "support" leaves it out


async def test_another_tenants_set_of_the_same_name_serves_only_its_own(gateway: EmbeddedMcpServer) -> None:
    async with api_key_client(gateway, "/mcp/v/support", "key-beta") as c:
        assert [t.name for t in (await c.list_tools()).tools] == ["beta_echo"]
        # beta's set includes a "handbook", but beta has no such Resource: acme's is never reached.
        assert [str(r.uri) for r in (await c.list_resources()).resources] == ["doc://guide"]
        assert (await c.list_prompts()).prompts == []  # its only upstream prompt is disabled
        with pytest.raises(MCPError) as err:
            await c.read_resource("acme://handbook")
        assert err.value.error.code == RESOURCE_NOT_FOUND
        with pytest.raises(MCPError, match="Unknown prompt"):
            await c.get_prompt("hello", {"who": "x"})
