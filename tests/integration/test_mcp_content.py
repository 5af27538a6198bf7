"""Resources, prompts and completions through the real MCP HTTP server: official SDK clients, a real
upstream for endpoint-backed resources, the files source hot reloading entries, policy, metering."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import PromptReference, ResourceTemplateReference

from link.model import Outcome
from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.upstream import EchoUpstream
from tests.unit.mcp_server.support import RecordingSink, settings

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

POLICY = """
package envoy.authz
import rego.v1
default allow := false
allow if not denied
denied if input.stoa.resource.name == "secret-doc"
denied if input.stoa.resource.variables.id == "forbidden"
denied if input.stoa.prompt.name == "forbidden-prompt"
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def resource(name: str, tenant: str = "demo", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "Resource",
            "metadata": {"name": name, "namespace": tenant}, "spec": {"description": f"The {name}", **spec}}


def prompt(name: str, tenant: str = "demo", **spec: Any) -> dict[str, Any]:
    body = {"description": f"The {name}", "messages": [
        {"role": "user", "content": {"type": "text", "text": "Hello"}}]}
    body.update(spec)
    return {"apiVersion": "gostoa.dev/v1alpha1", "kind": "Prompt",
            "metadata": {"name": name, "namespace": tenant}, "spec": body}


def manifests(dead: int) -> list[dict[str, Any]]:
    return [
        resource("readme", uri="docs://readme", mimeType="text/markdown", text="# Read me"),
        resource("logo", uri="img://logo", mimeType="image/png", blob=base64.b64encode(b"\x89PNG-bytes").decode()),
        resource("item", uriTemplate="items://{id}", mimeType="application/json",
                 endpoint="${ECHO_UPSTREAM}/items/{id}", completions={"id": ["alpha", "alpine", "beta"]}),
        resource("broken", uri="up://broken", endpoint="${ECHO_UPSTREAM}/status/500"),
        resource("unreachable", uri="up://unreachable", endpoint=f"http://127.0.0.1:{dead}/x", timeout="2s"),
        # The upstream echoes the request headers: this one's answer is over the 1 KiB cap below.
        resource("oversize", uri="up://oversize", endpoint="${ECHO_UPSTREAM}/big", headers={"X-Pad": "p" * 1500}),
        resource("secret-doc", uri="docs://secret", text="classified"),
        resource("limited", uri="docs://limited", text="scarce", rateLimit="2/min"),
        resource("acme-ledger", tenant="tenant-acme", uri="acme://ledger", text="acme's ledger"),
        resource("beta-ledger", tenant="tenant-beta", uri="acme://ledger", text="beta's ledger"),
        prompt("greet", arguments=[{"name": "who", "required": True, "completions": ["world", "wonder", "you"]},
                                   {"name": "tone", "description": "optional"}],
               messages=[{"role": "user", "content": {"type": "text", "text": "Greet {{who}} {{tone}}"}},
                         {"role": "assistant", "content": {"type": "resource", "resource": {
                             "uri": "docs://{{who}}", "mimeType": "text/plain", "text": "for {{who}}"}}}]),
        prompt("forbidden-prompt"),
        prompt("acme-only", tenant="tenant-acme"),
    ]


class Running:
    def __init__(self, mcp: EmbeddedMcpServer, up: EchoUpstream, root: Path, sink: RecordingSink) -> None:
        self.mcp, self.up, self.root, self.sink = mcp, up, root, sink

    def write(self, filename: str, *docs: dict[str, Any]) -> None:
        (self.root / filename).write_text(yaml.safe_dump_all(list(docs)))

    def events(self, tool: str) -> list[Any]:
        return [e for e in self.sink.outcomes if e.tool == tool]


@pytest.fixture
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    root = tmp_path / "registry"
    root.mkdir()
    (root / "content.yaml").write_text(yaml.safe_dump_all(manifests(_closed_port())))
    policy = tmp_path / "policy.rego"
    policy.write_text(POLICY)
    with EchoUpstream() as up:
        monkeypatch.setenv("ECHO_UPSTREAM", up.url)
        s = settings(tmp_path, registry__source="files", registry__path=str(root), registry__reload_interval_s=0.05,
                     policy__enabled=True, policy__paths=[str(policy)], mcp__upstream_max_response_bytes=1024)
        async with EmbeddedMcpServer(s) as mcp:
            sink = RecordingSink()
            mcp.app.add_outcome_sink(sink)
            assert mcp.app.extras["registry"].errors() == {}
            yield Running(mcp, up, root, sink)


def keyed(url: str, key: str) -> Any:
    return streamable_http_client(url, http_client=httpx2.AsyncClient(headers={"x-api-key": key}))


async def test_initialize_advertises_resources_prompts_and_completions(running: Running) -> None:
    async with Client(running.mcp.url, mode="legacy") as client:
        caps = client.server_capabilities
        assert caps.resources is not None and caps.resources.subscribe and caps.resources.list_changed
        assert caps.prompts is not None and caps.prompts.list_changed
        assert caps.completions is not None


async def test_lists_are_the_callers_tenant_and_filtered_by_policy(running: Running) -> None:
    async with Client(running.mcp.url, mode="legacy") as anon:
        uris = sorted(str(r.uri) for r in (await anon.list_resources()).resources)
        templates = [t.uri_template for t in (await anon.list_resource_templates()).resource_templates]
        prompts = sorted(p.name for p in (await anon.list_prompts()).prompts)
    # Public tenant "demo" only; secret-doc is hidden by policy (by name), other tenants never appear.
    assert uris == ["docs://limited", "docs://readme", "img://logo", "up://broken", "up://oversize",
                    "up://unreachable"]
    assert templates == ["items://{id}"]
    assert prompts == ["greet"]
    async with Client(keyed(running.mcp.url, "key-acme"), mode="legacy") as acme:
        assert [str(r.uri) for r in (await acme.list_resources()).resources] == ["acme://ledger"]
        assert [p.name for p in (await acme.list_prompts()).prompts] == ["acme-only"]
        read = await acme.read_resource("acme://ledger")
    async with Client(keyed(running.mcp.url, "key-beta"), mode="legacy") as beta:
        beta_read = await beta.read_resource("acme://ledger")
    # The same URI in two tenants: each caller reads its own tenant's entry.
    assert read.contents[0].text == "acme's ledger"  # type: ignore[union-attr]
    assert beta_read.contents[0].text == "beta's ledger"  # type: ignore[union-attr]


async def test_reads_inline_text_blob_and_templated_endpoint_with_one_metering_event_each(running: Running) -> None:
    async with Client(running.mcp.url, mode="legacy") as client:
        text = await client.read_resource("docs://readme")
        blob = await client.read_resource("img://logo")
        item = await client.read_resource("items://a%20b")
    assert text.contents[0].text == "# Read me" and text.contents[0].mime_type == "text/markdown"  # type: ignore[union-attr]
    assert base64.b64decode(blob.contents[0].blob) == b"\x89PNG-bytes"  # type: ignore[union-attr]
    assert '"path": "/items/a%20b"' in item.contents[0].text  # type: ignore[union-attr]
    assert str(item.contents[0].uri) == "items://a%20b"
    assert [r.path for r in running.up.requests] == ["/items/a%20b"]
    for name in ("readme", "logo", "item"):
        [event] = running.events(name)
        assert event.outcome is Outcome.SUCCESS and event.source == "mcp" and event.tenant == "demo"
        assert event.path == f"/mcp/resources/{name}" and event.http_status == 200
    assert running.events("item")[0].t_backend_ms > 0


@pytest.mark.parametrize(("uri", "code", "status", "reason"), [
    ("up://broken", -32603, 500, "upstream_status"),
    ("up://unreachable", -32603, 502, "connect"),
    ("up://oversize", -32603, 502, "too_large"),
    ("docs://secret", -32600, 403, "policy_denied"),
    ("items://forbidden", -32600, 403, "policy_denied"),
])
async def test_failing_or_refused_reads_are_clean_json_rpc_errors_and_metered(
        running: Running, uri: str, code: int, status: int, reason: str) -> None:
    async with Client(running.mcp.url, mode="legacy") as client:
        with pytest.raises(MCPError) as exc:
            await client.read_resource(uri)
        # The session survives: the next request is served.
        assert (await client.read_resource("docs://readme")).contents
    assert exc.value.error.code == code
    data = exc.value.error.data
    assert isinstance(data, dict) and data["status"] == status and reason in data["reason"], data
    failed = [e for e in running.sink.outcomes if e.tool != "readme"]
    assert len(failed) == 1 and failed[0].http_status == status
    assert failed[0].outcome in (Outcome.ERROR, Outcome.POLICY_DENIED)


@pytest.mark.parametrize("uri", ["nope://x", "acme://other", "items://", "items://a/b", "items://..", "items://%2e%2e",
                                 "items://%0a", "items://%ff", ""])
async def test_unknown_uris_are_resource_not_found(running: Running, uri: str) -> None:
    async with Client(running.mcp.url, mode="legacy") as client:
        with pytest.raises(MCPError) as exc:
            await client.read_resource(uri)
    assert exc.value.error.code == -32002
    assert [e.outcome for e in running.sink.outcomes] == [Outcome.NOT_FOUND]
    assert running.up.requests == []


async def test_a_private_tenants_entries_are_not_found_for_others(running: Running) -> None:
    async with Client(running.mcp.url, mode="legacy") as anon:
        with pytest.raises(MCPError) as read:
            await anon.read_resource("acme://ledger")
        with pytest.raises(MCPError) as get:
            await anon.get_prompt("acme-only")
        with pytest.raises(MCPError) as sub:
            await anon.subscribe_resource("acme://ledger")
    assert read.value.error.code == -32002 and sub.value.error.code == -32002
    assert get.value.error.code == -32602


async def test_prompts_render_arguments_and_refuse_bad_ones_with_a_reason(running: Running) -> None:
    async with Client(running.mcp.url, mode="legacy") as client:
        got = await client.get_prompt("greet", {"who": "Ada", "tone": "warmly"})
        with pytest.raises(MCPError) as missing:
            await client.get_prompt("greet", {"tone": "x"})
        with pytest.raises(MCPError) as unknown_arg:
            await client.get_prompt("greet", {"who": "x", "mood": "y"})
        with pytest.raises(MCPError) as refused:
            await client.get_prompt("forbidden-prompt")
        with pytest.raises(MCPError) as unknown:
            await client.get_prompt("no-such-prompt")
    assert got.messages[0].content.text == "Greet Ada warmly"  # type: ignore[union-attr]
    assert str(got.messages[1].content.resource.uri) == "docs://Ada"  # type: ignore[union-attr]
    assert missing.value.error.code == -32602
    assert missing.value.error.data == {"field": "who", "reason": "required"}
    assert unknown_arg.value.error.data == {"field": "mood", "reason": "not an argument of the prompt"}
    assert refused.value.error.data["status"] == 403  # type: ignore[index]
    assert unknown.value.error.code == -32602
    outcomes = [(e.tool, e.outcome) for e in running.sink.outcomes]
    assert outcomes == [("greet", Outcome.SUCCESS), ("greet", Outcome.INVALID), ("greet", Outcome.INVALID),
                        ("forbidden-prompt", Outcome.POLICY_DENIED), ("no-such-prompt", Outcome.NOT_FOUND)]


async def test_completions_for_prompt_arguments_and_template_variables(running: Running) -> None:
    async with Client(running.mcp.url, mode="legacy") as client:
        arg = await client.complete(PromptReference(type="ref/prompt", name="greet"), {"name": "who", "value": "wo"})
        var = await client.complete(ResourceTemplateReference(type="ref/resource", uri="items://{id}"),
                                    {"name": "id", "value": "al"})
        none = await client.complete(PromptReference(type="ref/prompt", name="greet"), {"name": "tone", "value": ""})
        with pytest.raises(MCPError) as hidden:
            await client.complete(PromptReference(type="ref/prompt", name="acme-only"), {"name": "x", "value": ""})
        with pytest.raises(MCPError) as bad_var:
            await client.complete(ResourceTemplateReference(type="ref/resource", uri="items://{id}"),
                                  {"name": "nope", "value": ""})
    assert arg.completion.values == ["world", "wonder"] and arg.completion.total == 2
    assert var.completion.values == ["alpha", "alpine"]
    assert none.completion.values == []
    assert hidden.value.error.code == -32602 and bad_var.value.error.code == -32602


async def test_subscriptions_get_updated_and_list_changed_notifications(running: Running) -> None:
    seen: list[tuple[str, str]] = []
    updated = asyncio.Event()
    listed = asyncio.Event()

    async def on_message(message: Any) -> None:
        kind = type(message).__name__
        uri = str(getattr(getattr(message, "params", None), "uri", ""))
        seen.append((kind, uri))
        if kind == "ResourceUpdatedNotification":
            updated.set()
        if kind == "PromptListChangedNotification":
            listed.set()

    async with Client(running.mcp.url, mode="legacy", message_handler=on_message) as client:
        await client.subscribe_resource("docs://readme")
        await client.subscribe_resource("items://x")
        await client.subscribe_resource("img://logo")
        await client.unsubscribe_resource("img://logo")
        await asyncio.sleep(0.2)  # let the client open its standalone GET stream
        extra = yaml.safe_load_all((running.root / "content.yaml").read_text())
        docs = [d for d in extra]
        for d in docs:
            if d["metadata"]["name"] == "readme":
                d["spec"]["text"] = "# Read me, v2"
        docs.append(prompt("added-later"))
        running.write("content.yaml", *docs)
        await asyncio.wait_for(updated.wait(), 10)
        await asyncio.wait_for(listed.wait(), 10)
        await asyncio.sleep(0.3)  # anything else would arrive in the same fan-out
        assert (await client.read_resource("docs://readme")).contents[0].text == "# Read me, v2"  # type: ignore[union-attr]
        assert "added-later" in [p.name for p in (await client.list_prompts()).prompts]
    kinds = [k for k, _ in seen]
    assert ("ResourceUpdatedNotification", "docs://readme") in seen
    # Only the changed entry's subscription fires (not the template's, not the unsubscribed one).
    assert [u for k, u in seen if k == "ResourceUpdatedNotification"] == ["docs://readme"]
    assert "ResourceListChangedNotification" in kinds and "PromptListChangedNotification" in kinds
    # Tools did not change: no tools/list_changed.
    assert "ToolListChangedNotification" not in kinds


async def test_2026_listen_streams_get_resource_events(running: Running) -> None:
    async with Client(running.mcp.url, mode="2026-07-28") as client:
        async with client.listen(resources_list_changed=True, resource_subscriptions=["docs://readme"]) as sub:
            docs = list(yaml.safe_load_all((running.root / "content.yaml").read_text()))
            for d in docs:
                if d["metadata"]["name"] == "readme":
                    d["spec"]["text"] = "v3"
            running.write("content.yaml", *docs)
            events = []
            stream = sub.__aiter__()
            for _ in range(2):
                events.append(type(await asyncio.wait_for(stream.__anext__(), 10)).__name__)
        assert sorted(events) == ["ResourceUpdated", "ResourcesListChanged"]
        assert (await client.read_resource("docs://readme")).contents[0].text == "v3"  # type: ignore[union-attr]


async def test_the_built_in_default_policy_serves_public_entries_anonymously(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "registry"
    root.mkdir()
    (root / "content.yaml").write_text(yaml.safe_dump_all([
        resource("readme", uri="docs://readme", text="# Read me"), prompt("hello"),
        resource("acme-ledger", tenant="tenant-acme", uri="acme://ledger", text="acme's ledger")]))
    s = settings(tmp_path, registry__source="files", registry__path=str(root), policy__enabled=True)
    async with EmbeddedMcpServer(s) as mcp:
        async with Client(mcp.url, mode="legacy") as anon:
            assert (await anon.read_resource("docs://readme")).contents[0].text == "# Read me"  # type: ignore[union-attr]
            assert (await anon.get_prompt("hello")).messages
        async with Client(keyed(mcp.url, "key-acme"), mode="legacy") as acme:
            assert (await acme.read_resource("acme://ledger")).contents[0].text == "acme's ledger"  # type: ignore[union-attr]


async def test_a_resources_rate_limit_refuses_the_read_over_it(running: Running) -> None:
    async with Client(running.mcp.url, mode="legacy") as client:
        for _ in range(2):
            assert (await client.read_resource("docs://limited")).contents
        with pytest.raises(MCPError) as exc:
            await client.read_resource("docs://limited")
    assert exc.value.error.data["status"] == 429  # type: ignore[index]
    assert [e.outcome for e in running.events("limited")] == [Outcome.SUCCESS, Outcome.SUCCESS, Outcome.RATE_LIMITED]


async def test_an_update_of_another_tenants_entry_with_the_same_uri_is_not_notified(running: Running) -> None:
    seen: list[str] = []
    got = asyncio.Event()

    async def on_message(message: Any) -> None:
        if type(message).__name__ == "ResourceUpdatedNotification":
            seen.append(str(message.params.uri))
            got.set()

    async with Client(keyed(running.mcp.url, "key-acme"), mode="legacy", message_handler=on_message) as acme:
        await acme.subscribe_resource("acme://ledger")
        await asyncio.sleep(0.2)  # let the client open its standalone GET stream
        docs = list(yaml.safe_load_all((running.root / "content.yaml").read_text()))
        for d in docs:
            if d["metadata"]["name"] == "beta-ledger":
                d["spec"]["text"] = "beta's ledger, v2"
        running.write("content.yaml", *docs)
        registry = running.mcp.app.extras["registry"]
        deadline = asyncio.get_running_loop().time() + 10
        while registry.resources("tenant-beta")[0].text != "beta's ledger, v2":
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # the fan-out (debounced 50 ms) has run
        assert seen == []
        # Its own entry changing does reach it.
        for d in docs:
            if d["metadata"]["name"] == "acme-ledger":
                d["spec"]["text"] = "acme's ledger, v2"
        running.write("content.yaml", *docs)
        await asyncio.wait_for(got.wait(), 10)
    assert seen == ["acme://ledger"]
