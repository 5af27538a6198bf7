"""The tool gateway: tenancy, the Link pipeline on every call, result mapping and metering."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from link.model import ANONYMOUS, Outcome, Request
from link.registry.model import parse_tool
from mcp_server.auth import CallerAuthenticator
from mcp_server.catalog import InvalidArguments
from mcp_server.gateway import Caller, ToolGateway, UnknownTool, result_from_upstream
from mcp_server.secrets import SecretStore
from mcp_server.upstream import HttpToolInvoker, UpstreamResponse
from tests.unit.mcp_server.support import MockUpstream, link_app, settings, tool

MANIFESTS = [
    tool("echo", inputSchema={"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}),
    tool("acme-invoice", tenant="tenant-acme", endpoint="http://upstream.test/invoices/{id}", method="GET",
         inputSchema={"type": "object", "properties": {"id": {"type": "string"}}}),
    tool("beta-secret", tenant="tenant-beta"),
    tool("limited", rateLimit="2/min"),
    tool("denied-by-policy"),
]


async def caller_for(app: Any, key: str | None) -> Caller:
    headers = {"x-api-key": key} if key else {}
    auth = CallerAuthenticator(app)
    result = await auth.authenticate(Request(method="POST", path="/mcp", headers=headers))
    assert result.principal is not None, result.refusal
    return Caller(principal=result.principal, headers=headers)


def gateway(tmp_path: Path, up: MockUpstream, **overrides: Any) -> tuple[ToolGateway, Any, Any]:
    app, registry, sink = link_app(settings(tmp_path, **overrides), MANIFESTS)
    invoker = HttpToolInvoker(SecretStore(None), transport=up.transport())
    return ToolGateway(app, registry, invoker), app, sink


async def test_anonymous_callers_see_public_tenants_and_key_holders_their_own(tmp_path: Path) -> None:
    gw, app, _ = gateway(tmp_path, MockUpstream())
    anon = await caller_for(app, None)
    acme = await caller_for(app, "key-acme")
    assert [t["name"] for t in await gw.list_tools(anon)] == ["denied-by-policy", "echo", "limited"]
    assert [t["name"] for t in await gw.list_tools(acme)] == ["acme-invoice"]


async def test_a_call_runs_the_pipeline_validates_and_meters_one_event(tmp_path: Path) -> None:
    up = MockUpstream()
    gw, app, sink = gateway(tmp_path, up)
    acme = await caller_for(app, "key-acme")
    result = await gw.call(acme, "acme-invoice", {"id": "42"})
    assert not result.is_error and result.status == 200
    assert result.structured is not None and result.structured["url"] == "http://upstream.test/invoices/42"
    assert json.loads(result.content[0]["text"]) == result.structured
    # The pipeline's headers reached the upstream: who is calling, for which tenant.
    sent = up.seen[0].headers
    assert sent["x-stoa-tenant"] == "tenant-acme" and sent["x-stoa-consumer"] == "acme-app"
    assert "x-api-key" not in sent  # the caller's credential is not forwarded
    [event] = sink.outcomes
    assert (event.source, event.tool, event.tenant, event.consumer) == ("mcp", "acme-invoice", "tenant-acme",
                                                                        "acme-app")
    assert event.outcome is Outcome.SUCCESS and event.http_status == 200
    assert event.path == "/mcp/tools/acme-invoice" and event.credential == "api_key"
    assert event.request_size_bytes == len('{"id":"42"}') and event.response_size_bytes > 0
    assert event.latency_ms >= event.t_backend_ms >= 0


async def test_another_tenants_tool_is_refused_and_never_reaches_the_upstream(tmp_path: Path) -> None:
    up = MockUpstream()
    gw, app, sink = gateway(tmp_path, up)
    acme = await caller_for(app, "key-acme")
    with pytest.raises(UnknownTool):
        await gw.call(acme, "beta-secret", {})
    anon = await caller_for(app, None)
    with pytest.raises(UnknownTool):
        await gw.call(anon, "acme-invoice", {"id": "1"})
    assert up.seen == []
    assert [e.outcome for e in sink.outcomes] == [Outcome.NOT_FOUND, Outcome.NOT_FOUND]
    assert sink.outcomes[0].tenant == "tenant-acme" and sink.outcomes[0].tool == "beta-secret"


async def test_invalid_arguments_never_reach_the_upstream(tmp_path: Path) -> None:
    up = MockUpstream()
    gw, app, sink = gateway(tmp_path, up)
    anon = await caller_for(app, None)
    with pytest.raises(InvalidArguments) as err:
        await gw.call(anon, "echo", {"id": 5})
    assert err.value.field == "id"
    assert up.seen == []
    assert sink.outcomes[0].outcome is Outcome.INVALID and sink.outcomes[0].http_status == 400


async def test_upstream_errors_are_tool_errors_carrying_the_status(tmp_path: Path) -> None:
    up = MockUpstream(respond=lambda r: httpx.Response(503, json={"detail": "maintenance"}))
    gw, app, sink = gateway(tmp_path, up)
    result = await gw.call(await caller_for(app, None), "echo", {"id": "1"})
    assert result.is_error and result.status == 503
    assert result.structured == {"status": 503, "error": {"detail": "maintenance"}}
    assert result.content[0]["text"].startswith("HTTP 503: ")
    assert sink.outcomes[0].outcome is Outcome.ERROR and sink.outcomes[0].http_status == 503
    assert sink.outcomes[0].reason == "upstream_status"


async def test_the_per_tool_rate_limit_comes_from_the_pipeline(tmp_path: Path) -> None:
    up = MockUpstream()
    gw, app, sink = gateway(tmp_path, up)
    anon = await caller_for(app, None)
    results = [await gw.call(anon, "limited", {}) for _ in range(3)]
    assert [r.is_error for r in results] == [False, False, True]
    refused = results[2]
    assert refused.status == 429 and refused.refusal is not None
    assert len(up.seen) == 2
    assert sink.outcomes[2].outcome is Outcome.RATE_LIMITED


POLICY = """
package envoy.authz
import rego.v1
default allow := false
allow if {
    input.stoa.tool.name != "denied-by-policy"
    not input.stoa.tool.arguments.forbidden
}
"""


async def test_policy_filters_the_list_and_refuses_calls_with_tool_and_arguments_as_input(tmp_path: Path) -> None:
    policy = tmp_path / "p.rego"
    policy.write_text(POLICY)
    up = MockUpstream()
    gw, app, sink = gateway(tmp_path, up, policy__enabled=True, policy__paths=[str(policy)])
    anon = await caller_for(app, None)
    assert [t["name"] for t in await gw.list_tools(anon)] == ["echo", "limited"]
    denied = await gw.call(anon, "denied-by-policy", {})
    assert denied.is_error and denied.status == 403
    by_argument = await gw.call(anon, "echo", {"id": "1", "forbidden": True})
    assert by_argument.is_error and by_argument.status == 403
    allowed = await gw.call(anon, "echo", {"id": "1"})
    assert not allowed.is_error
    assert len(up.seen) == 1
    assert [e.outcome for e in sink.outcomes] == [Outcome.POLICY_DENIED, Outcome.POLICY_DENIED, Outcome.SUCCESS]


def _resp(status: int, body: bytes, ct: str) -> UpstreamResponse:
    return UpstreamResponse(status=status, body=body, content_type=ct, elapsed_s=0.001)


def test_result_mapping_text_json_arrays_images_and_errors() -> None:
    t = parse_tool(tool("x"))
    text = result_from_upstream(t, _resp(200, b"hello", "text/plain"))
    assert text.content == [{"type": "text", "text": "hello"}] and text.structured is None
    array = result_from_upstream(t, _resp(200, b"[1,2]", "application/json; charset=utf-8"))
    assert array.structured == {"result": [1, 2]}
    image = result_from_upstream(t, _resp(200, b"\x89PNG", "image/png"))
    assert image.content == [{"type": "image", "data": base64.b64encode(b"\x89PNG").decode(), "mimeType": "image/png"}]
    empty_error = result_from_upstream(t, _resp(404, b"", "text/plain"))
    assert empty_error.is_error and empty_error.content[0]["text"] == "HTTP 404"
    assert empty_error.structured == {"status": 404, "error": ""}


async def test_anonymous_principal_is_refused_without_public_tenants(tmp_path: Path) -> None:
    app, _, _ = link_app(settings(tmp_path, mcp__public_tenants=[]), [])
    result = await CallerAuthenticator(app).authenticate(Request(method="POST", path="/mcp", headers={}))
    assert result.principal is None and result.refusal is not None and result.refusal.http_status == 401
    bad = await CallerAuthenticator(app).authenticate(
        Request(method="POST", path="/mcp", headers={"x-api-key": "wrong"}))
    assert bad.refusal is not None and bad.refusal.http_status == 401
    assert ANONYMOUS.tenant == ""
