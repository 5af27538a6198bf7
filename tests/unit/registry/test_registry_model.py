"""Parsing Tool and ToolSet manifests: every refusal names the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from link.registry import ResourceError, parse_tool, parse_toolset
from link.registry.model import parse_duration, thaw


def tool_manifest(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "gostoa.dev/v1alpha1",
        "kind": "Tool",
        "metadata": {"name": "get-invoice", "namespace": "tenant-acme", "generation": 3, "resourceVersion": "42"},
        "spec": {
            "displayName": "Get invoice",
            "description": "Fetch one invoice",
            "endpoint": "https://billing.internal/v1/invoices/{invoiceId}",
            "method": "GET",
            "inputSchema": {"type": "object", "properties": {"invoiceId": {"type": "string"}},
                            "required": ["invoiceId"]},
        },
    }
    base["spec"].update(spec)
    return base


def toolset_manifest(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "gostoa.dev/v1alpha1",
        "kind": "ToolSet",
        "metadata": {"name": "kb", "namespace": "tenant-acme"},
        "spec": {"upstream": {"url": "https://mcp.internal/mcp"}, "prefix": "kb_"},
    }
    base["spec"].update(spec)
    return base


def test_a_full_tool_parses_with_every_field() -> None:
    tool = parse_tool(tool_manifest(
        outputSchema={"type": "object", "properties": {"total": {"type": "number"}}},
        auth={"type": "api_key", "secretRef": "billing-key", "headerName": "X-Key"},
        rateLimit="100/min", timeout="2.5s", headers={"X-Source": "stoa"},
        annotations={"title": "Invoice", "readOnlyHint": True},
    ))
    assert (tool.tenant, tool.name, tool.method) == ("tenant-acme", "get-invoice", "GET")
    assert tool.display_name == "Get invoice" and tool.description == "Fetch one invoice"
    assert tool.auth.type == "api_key" and tool.auth.secret_ref == "billing-key" and tool.auth.header_name == "X-Key"
    assert tool.rate_limit == "100/min" and tool.timeout_s == 2.5
    assert dict(tool.headers) == {"X-Source": "stoa"}
    assert tool.annotations["readOnlyHint"] is True
    assert tool.generation == 3 and tool.resource_version == "42"
    assert thaw(tool.input_schema)["required"] == ["invoiceId"]
    assert thaw(tool.output_schema)["properties"]["total"] == {"type": "number"}


def test_defaults_method_post_timeout_30s_empty_object_schema() -> None:
    m = tool_manifest()
    del m["spec"]["method"], m["spec"]["inputSchema"]
    m["spec"]["endpoint"] = "https://x.example/run"
    tool = parse_tool(m)
    assert tool.method == "POST" and tool.timeout_s == 30.0
    assert thaw(tool.input_schema) == {"type": "object"}
    assert tool.auth.type == "none" and tool.rate_limit is None


def test_parsed_tool_is_immutable_and_independent_of_the_manifest() -> None:
    m = tool_manifest()
    tool = parse_tool(m)
    m["spec"]["inputSchema"]["properties"]["invoiceId"]["type"] = "integer"
    assert thaw(tool.input_schema)["properties"]["invoiceId"] == {"type": "string"}
    with pytest.raises(TypeError):
        tool.input_schema["type"] = "array"  # type: ignore[index]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda m: m.update(apiVersion="v1"), "apiVersion"),
        (lambda m: m.update(kind="Service"), "kind"),
        (lambda m: m["metadata"].pop("name"), "metadata.name"),
        (lambda m: m["metadata"].pop("namespace"), "metadata.namespace"),
        (lambda m: m["metadata"].update(namespace="Tenant_ACME"), "metadata.namespace"),
        (lambda m: m["metadata"].update(name="bad name!"), "metadata.name"),
        (lambda m: m.pop("spec"), "spec"),
        (lambda m: m["spec"].pop("displayName"), "spec.displayName"),
        (lambda m: m["spec"].pop("description"), "spec.description"),
        (lambda m: m["spec"].pop("endpoint"), "spec.endpoint"),
        (lambda m: m["spec"].update(endpoint="ftp://x/y"), "spec.endpoint"),
        (lambda m: m["spec"].update(endpoint="https://x/{a"), "spec.endpoint"),
        (lambda m: m["spec"].update(endpoint="https://x/{other}"), "spec.endpoint"),
        (lambda m: m["spec"].update(method="TRACE"), "spec.method"),
        (lambda m: m["spec"].update(inputSchema={"type": "array"}), "spec.inputSchema.type"),
        (lambda m: m["spec"].update(inputSchema={"type": "object", "properties": {"a": {"type": 5}}}),
         "spec.inputSchema.properties.a.type"),
        (lambda m: m["spec"].update(inputSchema="nope"), "spec.inputSchema"),
        (lambda m: m["spec"].update(outputSchema={"type": "string"}), "spec.outputSchema.type"),
        (lambda m: m["spec"].update(rateLimit="100/fortnight"), "spec.rateLimit"),
        (lambda m: m["spec"].update(timeout="soon"), "spec.timeout"),
        (lambda m: m["spec"].update(timeout="0s"), "spec.timeout"),
        (lambda m: m["spec"].update(auth={"type": "kerberos"}), "spec.auth.type"),
        (lambda m: m["spec"].update(auth={"type": "bearer"}), "spec.auth.secretRef"),
        (lambda m: m["spec"].update(auth={"type": "bearer", "secretRef": "../etc/passwd"}), "spec.auth.secretRef"),
        (lambda m: m["spec"].update(auth={"type": "none", "passthroughUserToken": "yes"}),
         "spec.auth.passthroughUserToken"),
        (lambda m: m["spec"].update(auth={"type": "none", "passthroughUserToken": True}),
         "spec.auth.passthroughUserToken"),
        (lambda m: m["spec"].update(auth={"type": "none", "tokenExchange": {}}), "spec.auth.tokenExchange.audience"),
        (lambda m: m["spec"].update(auth={"type": "none", "tokenExchange": "billing"}), "spec.auth.tokenExchange"),
        (lambda m: m["spec"].update(auth={"type": "none", "tokenExchange": {"audience": "a", "aud": "b"}}),
         "spec.auth.tokenExchange.aud"),
        (lambda m: m["spec"].update(auth={"type": "none", "tokenExchange": {"audience": "a", "resource": "/x"}}),
         "spec.auth.tokenExchange.resource"),
        (lambda m: m["spec"].update(auth={"type": "none", "tokenExchange": {"audience": "a",
                                                                            "headerName": "bad header"}}),
         "spec.auth.tokenExchange.headerName"),
        (lambda m: m["spec"].update(auth={"type": "bearer", "secretRef": "t", "tokenExchange": {"audience": "a"}}),
         "spec.auth.tokenExchange.headerName"),
        (lambda m: m["spec"].update(headers={"X-A": 1}), "spec.headers.X-A"),
        (lambda m: m["spec"].update(headers={"bad header": "v"}), "spec.headers"),
        (lambda m: m["spec"].update(annotations={"readOnlyHint": "true"}), "spec.annotations.readOnlyHint"),
    ],
)
def test_an_invalid_tool_is_refused_naming_the_field(mutate: Any, field: str) -> None:
    m = copy.deepcopy(tool_manifest())
    mutate(m)
    with pytest.raises(ResourceError) as err:
        parse_tool(m)
    assert err.value.field == field, str(err.value)
    assert str(err.value).startswith(f"{field}: ")


def test_passthrough_is_refused_and_token_exchange_is_its_replacement() -> None:
    with pytest.raises(ResourceError, match="forbidden by the MCP authorization spec"):
        parse_tool(tool_manifest(auth={"type": "none", "passthroughUserToken": True}))
    assert parse_tool(tool_manifest(auth={"type": "none", "passthroughUserToken": False})).auth.token_exchange is None
    tool = parse_tool(tool_manifest(auth={"type": "api_key", "secretRef": "k", "tokenExchange": {
        "audience": "billing-api", "resource": "https://billing.internal/", "scope": "invoices:read",
        "headerName": "X-User-Token"}}))
    exchange = tool.auth.token_exchange
    assert exchange is not None and tool.auth.secret_ref == "k"
    assert (exchange.audience, exchange.resource, exchange.scope, exchange.header_name) == (
        "billing-api", "https://billing.internal/", "invoices:read", "x-user-token")


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("5m", 300.0), ("1h", 3600.0),
                                               ("250ms", 0.25), (12, 12.0), ("1.5s", 1.5)])
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text, "x") == seconds


def test_a_toolset_parses_its_upstream_selection_and_prefix() -> None:
    ts = parse_toolset(toolset_manifest(
        upstream={"url": "https://mcp.internal/mcp", "transport": "sse",
                  "auth": {"type": "header", "secretRef": "kb-key", "headerName": "X-Key"}, "timeoutSeconds": 5},
        tools=[{"name": "search", "alias": "kb_search"}, {"name": "drop", "enabled": False}, {"name": "get"}],
        refreshInterval="1m",
    ))
    assert ts.upstream.transport == "sse" and ts.upstream.timeout_s == 5.0
    assert ts.upstream.auth.type == "header" and ts.upstream.auth.header_name == "X-Key"
    assert ts.refresh_interval_s == 60.0
    assert ts.exposed_name("search") == "kb_search"
    assert ts.exposed_name("get") == "kb_get"
    assert ts.exposed_name("drop") is None
    assert ts.exposed_name("unlisted") is None


def test_a_toolset_without_selection_exposes_everything_under_its_prefix() -> None:
    ts = parse_toolset(toolset_manifest())
    assert ts.exposed_name("anything") == "kb_anything"
    assert ts.exposed_prompt("anything") == "kb_anything" and ts.selects_resource("any://thing")
    assert ts.include.tools == ts.include.resources == ts.include.prompts == ()
    assert ts.upstream.transport == "streamable-http" and ts.refresh_interval_s == 300.0


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"upstream": None}, "spec.upstream"),
        ({"upstream": {"url": "mcp.internal"}}, "spec.upstream.url"),
        ({"upstream": {"url": "https://m/mcp", "transport": "websocket"}}, "spec.upstream.transport"),
        ({"upstream": {"url": "https://m/mcp", "auth": {"type": "bearer"}}}, "spec.upstream.auth.secretRef"),
        ({"upstream": {"url": "https://m/mcp", "auth": {"type": "header", "secretRef": "k"}}},
         "spec.upstream.auth.headerName"),
        ({"tools": "search"}, "spec.tools"),
        ({"tools": [{"alias": "x"}]}, "spec.tools[0].name"),
        ({"tools": [{"name": "a", "alias": "same"}, {"name": "b", "alias": "same"}]}, "spec.tools[1]"),
        ({"prefix": "bad prefix"}, "spec.prefix"),
        ({"refreshInterval": "often"}, "spec.refreshInterval"),
        ({"resources": "doc://guide"}, "spec.resources"),
        ({"resources": [{"enabled": True}]}, "spec.resources[0].uri"),
        ({"resources": [{"uri": "doc://a"}, {"uri": "doc://a"}]}, "spec.resources[1].uri"),
        ({"prompts": [{"name": "greet", "alias": "bad alias"}]}, "spec.prompts[0].alias"),
        ({"prompts": [{"name": "a", "alias": "x"}, {"name": "b", "alias": "x"}]}, "spec.prompts[1]"),
        ({"include": ["handbook"]}, "spec.include"),
        ({"include": {"resources": "handbook"}}, "spec.include.resources"),
        ({"include": {"prompts": ["a", "a"]}}, "spec.include.prompts[1]"),
        ({"include": {"tools": [""]}}, "spec.include.tools[0]"),
        ({"include": {"toolz": ["x"]}}, "spec.include.toolz"),
    ],
)
def test_an_invalid_toolset_is_refused_naming_the_field(spec: dict[str, Any], field: str) -> None:
    m = toolset_manifest()
    m["spec"].update(spec)
    if m["spec"].get("upstream") is None:
        m["spec"].pop("upstream")
    with pytest.raises(ResourceError) as err:
        parse_toolset(m)
    assert err.value.field == field, str(err.value)


def test_a_toolset_selects_resources_and_prompts_and_includes_registry_entries() -> None:
    ts = parse_toolset(toolset_manifest(
        resources=[{"uri": "doc://guide"}, {"uri": "doc://items/{item}", "enabled": False}],
        prompts=[{"name": "greet", "alias": "hello"}, {"name": "draft"}, {"name": "off", "enabled": False}],
        include={"tools": ["search"], "resources": ["handbook"], "prompts": ["onboarding", "review"]},
    ))
    assert ts.selects_resource("doc://guide")
    assert not ts.selects_resource("doc://items/{item}") and not ts.selects_resource("doc://other")
    assert ts.exposed_prompt("greet") == "hello" and ts.exposed_prompt("draft") == "kb_draft"
    assert ts.exposed_prompt("off") is None and ts.exposed_prompt("unlisted") is None
    assert ts.include.tools == ("search",) and ts.include.resources == ("handbook",)
    assert ts.include.prompts == ("onboarding", "review")
