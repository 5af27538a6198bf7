"""Mapping tool arguments to the upstream HTTP request, upstream auth, timeouts and limits."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from link.model import ANONYMOUS, CredentialKind, Principal
from link.registry import parse_tool
from mcp_server.secrets import SecretError, SecretStore
from mcp_server.upstream import ArgumentError, HttpToolInvoker, UpstreamError, build_request
from tests.unit.mcp_server.support import MockUpstream, tool

USER = Principal(kind=CredentialKind.JWT, subject="u1", consumer="app", tenant="demo", token="user-token")


def test_path_placeholders_are_percent_encoded_and_the_rest_goes_to_the_query_for_get() -> None:
    t = parse_tool(tool("get", endpoint="http://up/items/{id}", method="GET"))
    req = build_request(t, {"id": "a b/c", "q": "x", "n": 3, "flag": True, "tags": ["a", "b"], "none": None},
                        {}, {})
    assert req.url == "http://up/items/a%20b%2Fc"
    assert req.params == [("q", "x"), ("n", "3"), ("flag", "true"), ("tags", "a"), ("tags", "b")]
    assert req.content is None


def test_delete_uses_the_query_and_post_put_patch_a_json_body() -> None:
    delete = build_request(parse_tool(tool("d", endpoint="http://up/x/{id}", method="DELETE")),
                           {"id": 7, "force": False}, {}, {})
    assert delete.url == "http://up/x/7" and delete.params == [("force", "false")]
    for method in ("POST", "PUT", "PATCH"):
        req = build_request(parse_tool(tool("p", endpoint="http://up/x/{id}", method=method)),
                            {"id": "1", "name": "é", "nested": {"a": [1]}}, {}, {})
        assert req.url == "http://up/x/1" and req.params == []
        assert json.loads(req.content or b"") == {"name": "é", "nested": {"a": [1]}}
        assert req.headers["content-type"] == "application/json"


def test_a_missing_or_structured_path_argument_is_an_argument_error() -> None:
    t = parse_tool(tool("g", endpoint="http://up/items/{id}", method="GET"))
    with pytest.raises(ArgumentError, match="id: required"):
        build_request(t, {}, {}, {})
    with pytest.raises(ArgumentError, match="id: must be a string, number or boolean"):
        build_request(t, {"id": {"x": 1}}, {}, {})


def test_header_precedence_pipeline_then_static_then_auth() -> None:
    t = parse_tool(tool("h", headers={"X-Source": "stoa", "X-Stoa-Tenant": "static"}))
    req = build_request(t, {}, {"x-stoa-tenant": "demo", "x-request-id": "r1"}, {"authorization": "Bearer s"})
    assert req.headers["x-source"] == "stoa"
    assert req.headers["x-stoa-tenant"] == "static"
    assert req.headers["x-request-id"] == "r1"
    assert req.headers["authorization"] == "Bearer s"


def test_auth_headers_come_from_secrets_never_from_the_caller(tmp_path: Path) -> None:
    (tmp_path / "api").write_text("k-123\n")
    (tmp_path / "tok").write_text("svc-token")
    invoker = HttpToolInvoker(SecretStore(tmp_path))
    bearer = parse_tool(tool("b", auth={"type": "bearer", "secretRef": "tok"}))
    api_key = parse_tool(tool("a", auth={"type": "api_key", "secretRef": "api"}))
    custom = parse_tool(tool("c", auth={"type": "api_key", "secretRef": "api", "headerName": "X-Key"}))
    exchanged = parse_tool(tool("p", auth={"type": "api_key", "secretRef": "api",
                                           "tokenExchange": {"audience": "billing-api"}}))
    sa = parse_tool(tool("s", auth={"type": "service_account", "secretRef": "tok"}))
    assert invoker.auth_headers(bearer, USER) == {"authorization": "Bearer svc-token"}
    assert invoker.auth_headers(api_key, USER) == {"X-Api-Key": "k-123"}
    assert invoker.auth_headers(custom, USER) == {"X-Key": "k-123"}
    # The exchanged token is added by invoke() (see test_mcp_token_exchange); the caller's never is.
    assert invoker.auth_headers(exchanged, USER) == {"X-Api-Key": "k-123"}
    assert invoker.auth_headers(exchanged, ANONYMOUS) == {"X-Api-Key": "k-123"}
    assert invoker.auth_headers(sa, USER) == {"authorization": "Bearer svc-token"}


def test_secret_errors_name_the_secret_never_its_value(tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    with pytest.raises(SecretError, match="secret 'nope' not found"):
        store.read("nope")
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(SecretError, match="secret 'empty' is empty"):
        store.read("empty")
    with pytest.raises(SecretError, match="no secrets directory"):
        SecretStore(None).read("x")


def test_a_rotated_secret_is_read_again(tmp_path: Path) -> None:
    import os

    store = SecretStore(tmp_path)
    (tmp_path / "k").write_text("old")
    assert store.read("k") == "old"
    (tmp_path / "k").write_text("new!")
    st = (tmp_path / "k").stat()
    os.utime(tmp_path / "k", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert store.read("k") == "new!"


async def test_invoke_sends_the_mapped_request_and_returns_the_answer(tmp_path: Path) -> None:
    up = MockUpstream()
    invoker = HttpToolInvoker(SecretStore(tmp_path), transport=up.transport())
    t = parse_tool(tool("get", endpoint="http://upstream.test/items/{id}", method="GET"))
    resp = await invoker.invoke(t, {"id": "7", "q": "x"}, ANONYMOUS, {"x-request-id": "r1"})
    await invoker.aclose()
    assert resp.status == 200 and resp.content_type == "application/json"
    assert json.loads(resp.body)["url"] == "http://upstream.test/items/7?q=x"
    assert up.seen[0].headers["x-request-id"] == "r1"
    assert "authorization" not in up.seen[0].headers


async def test_a_missing_secret_fails_the_call_before_anything_is_sent(tmp_path: Path) -> None:
    up = MockUpstream()
    invoker = HttpToolInvoker(SecretStore(tmp_path), transport=up.transport())
    t = parse_tool(tool("b", auth={"type": "bearer", "secretRef": "absent"}))
    with pytest.raises(UpstreamError) as err:
        await invoker.invoke(t, {}, ANONYMOUS, {})
    assert err.value.kind == "secret" and err.value.status == 500 and up.seen == []


class _SlowTransport(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)


class _RefusingTransport(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)


async def test_the_tool_timeout_bounds_the_whole_exchange(tmp_path: Path) -> None:
    invoker = HttpToolInvoker(SecretStore(tmp_path), transport=_SlowTransport())
    t = parse_tool(tool("slow", timeout="100ms"))
    # The upstream would answer 200 after 5 s: only the tool's 100 ms bound makes this a timeout.
    with pytest.raises(UpstreamError) as err:
        await invoker.invoke(t, {}, ANONYMOUS, {})
    assert err.value.kind == "timeout" and err.value.status == 504


async def test_an_unreachable_upstream_is_a_502(tmp_path: Path) -> None:
    invoker = HttpToolInvoker(SecretStore(tmp_path), transport=_RefusingTransport())
    with pytest.raises(UpstreamError) as err:
        await invoker.invoke(parse_tool(tool("x")), {}, ANONYMOUS, {})
    assert (err.value.kind, err.value.status) == ("connect", 502)


async def test_an_oversized_answer_is_refused(tmp_path: Path) -> None:
    up = MockUpstream(respond=lambda r: httpx.Response(200, content=b"x" * 5000))
    invoker = HttpToolInvoker(SecretStore(tmp_path), transport=up.transport(), max_response_bytes=1024)
    with pytest.raises(UpstreamError) as err:
        await invoker.invoke(parse_tool(tool("big")), {}, ANONYMOUS, {})
    assert err.value.kind == "too_large"
