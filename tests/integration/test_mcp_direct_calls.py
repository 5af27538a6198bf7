"""The direct tools/call path answers exactly as the SDK does, for both protocol eras.

Two real MCP servers on the same registry and upstream, one with ``mcp.direct_tool_calls`` on and
one with it off (every POST through the SDK), get the same requests: successes, upstream errors,
invalid arguments, unknown tools, a caller of another tenant, foreign and unknown sessions,
mismatched 2026-07-28 routing headers, ``Mcp-Param`` headers, batches, progress tokens. Status,
media type, session header and the JSON answer must be identical; the direct server must have
answered exactly the plain calls itself (the rest went to the SDK).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.upstream import EchoUpstream
from tests.unit.mcp_server.support import settings, tool

pytestmark = pytest.mark.integration

ACCEPT = "application/json, text/event-stream"
MODERN = "2026-07-28"
ITEM = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
ROUTED = {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}


@pytest.fixture
async def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[bool, EmbeddedMcpServer]]:
    tools_dir = tmp_path / "tools"
    tools_dir.mkdir()
    with EchoUpstream() as up:
        (tools_dir / "tools.yaml").write_text(yaml.safe_dump_all([
            tool("get-item", endpoint=f"{up.url}/items/{{id}}", method="GET", inputSchema=ITEM),
            tool("broken", endpoint=f"{up.url}/status/500"),
            tool("routed", endpoint=f"{up.url}/routed", inputSchema=ROUTED),
            tool("acme-invoice", tenant="tenant-acme", endpoint=f"{up.url}/invoices/{{id}}", method="GET",
                 inputSchema=ITEM),
        ]))
        servers: dict[bool, EmbeddedMcpServer] = {}
        for direct in (True, False):
            s = settings(tmp_path, registry__source="files", registry__path=str(tools_dir),
                         mcp__direct_tool_calls=direct)
            servers[direct] = EmbeddedMcpServer(s)
            await servers[direct].start()
        try:
            yield servers
        finally:
            for server in servers.values():
                await server.stop()


def _call(name: str, arguments: Any = None, rid: Any = 7, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, **params}
    if arguments is not None:
        body["arguments"] = arguments
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": body}


def _modern(message: dict[str, Any], **meta: Any) -> dict[str, Any]:
    message["params"]["_meta"] = {"io.modelcontextprotocol/protocolVersion": MODERN,
                                  "io.modelcontextprotocol/clientCapabilities": {}, **meta}
    return message


def _modern_headers(name: str) -> dict[str, str]:
    return {"accept": ACCEPT, "mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": name}


async def _session(http: httpx.AsyncClient, url: str, key: str | None, version: str) -> str:
    headers = {"accept": ACCEPT, **({"x-api-key": key} if key else {})}
    r = await http.post(url, headers=headers, json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    sid = r.headers["mcp-session-id"]
    await http.post(url, headers={**headers, "mcp-session-id": sid, "mcp-protocol-version": version},
                    json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return sid


# (name, era, key, body, extra headers, answered directly)
CASES: list[tuple[str, str, str | None, Any, dict[str, str], bool]] = [
    ("ok", "2025-11-25", None, _call("get-item", {"id": "a b"}), {}, True),
    ("ok-06-18", "2025-06-18", None, _call("get-item", {"id": "1"}), {}, True),
    ("string-id", "2025-11-25", None, _call("get-item", {"id": "1"}, rid="abc"), {}, True),
    ("upstream-500", "2025-11-25", None, _call("broken", {}), {}, True),
    ("invalid-arguments", "2025-11-25", None, _call("get-item", {"id": 5}), {}, True),
    ("tenant-key", "2025-11-25", "key-acme", _call("acme-invoice", {"id": "9"}), {}, True),
    ("unicode", "2025-11-25", None, _call("get-item", {"id": "žluťoučký 🐎"}), {}, True),
    ("other-tenant", "2025-11-25", "key-beta", _call("acme-invoice", {"id": "9"}), {}, False),
    ("unknown-tool", "2025-11-25", "key-acme", _call("nope", {}), {}, False),
    ("arguments-not-object", "2025-11-25", None, _call("get-item", [1]), {}, False),
    ("progress-token", "2025-11-25", None, _call("get-item", {"id": "1"}, _meta={"progressToken": 1}), {}, False),
    ("batch", "2025-11-25", None, [_call("get-item", {"id": "1"})], {}, False),
    ("unknown-session", "2025-11-25", None, _call("get-item", {"id": "1"}),
     {"mcp-session-id": "0" * 32}, False),
    ("no-session", "2025-11-25", None, _call("get-item", {"id": "1"}), {"mcp-session-id": ""}, False),
    ("modern-ok", MODERN, None, _modern(_call("get-item", {"id": "1"})), {}, True),
    ("modern-client-info", MODERN, None,
     _modern(_call("get-item", {"id": "2"}), **{"io.modelcontextprotocol/clientInfo": {"name": "c", "version": "1"}}),
     {}, True),
    ("modern-upstream-500", MODERN, None, _modern(_call("broken", {})), {}, True),
    ("modern-invalid-arguments", MODERN, None, _modern(_call("get-item", {})), {}, True),
    ("modern-tenant-key", MODERN, "key-acme", _modern(_call("acme-invoice", {"id": "3"})), {}, True),
    ("modern-name-mismatch", MODERN, None, _modern(_call("get-item", {"id": "1"})), {"mcp-name": "broken"}, False),
    ("modern-duplicate-routing-header", MODERN, None, _modern(_call("get-item", {"id": "1"})),
     {"+mcp-name": "get-item"}, False),
    ("modern-no-meta", MODERN, None, _call("get-item", {"id": "1"}), {}, False),
    ("modern-param-header", MODERN, None, _modern(_call("get-item", {"id": "1"})), {"mcp-param-id": "1"}, False),
    ("modern-x-mcp-header-missing", MODERN, None, _modern(_call("routed", {"region": "eu"})), {}, False),
    ("modern-x-mcp-header-unused", MODERN, None, _modern(_call("routed", {})), {}, True),
    ("x-mcp-header-legacy", "2025-11-25", None, _call("routed", {"region": "eu"}), {}, True),
    ("modern-unknown-tool", MODERN, "key-acme", _modern(_call("nope", {})), {"mcp-name": "nope"}, False),
]


async def _answer(server: EmbeddedMcpServer, era: str, key: str | None, body: Any,
                  extra: dict[str, str], owner: str | None) -> tuple[int, str, bool, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        headers: dict[str, str] = {"x-request-id": "req-fixed"}
        if key:
            headers["x-api-key"] = key
        if era == MODERN:
            name = body["params"]["name"] if isinstance(body, dict) else ""
            headers.update(_modern_headers(name))
        else:
            sid = await _session(http, server.url, owner if owner is not None else key, era)
            headers.update({"accept": ACCEPT, "mcp-session-id": sid, "mcp-protocol-version": era})
        headers.update({k: v for k, v in extra.items() if not k.startswith("+")})
        lines = [(k, v) for k, v in {**headers, "content-type": "application/json"}.items() if v != ""]
        lines += [(k[1:], v) for k, v in extra.items() if k.startswith("+")]  # "+name": the header once more
        r = await http.post(server.url, headers=lines, content=json.dumps(body))
        text = r.text
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            text = next(line[5:] for line in text.splitlines() if line.startswith("data:") and line[5:].strip())
        return (r.status_code, r.headers.get("content-type", ""), "mcp-session-id" in r.headers,
                json.loads(text) if text.strip() else None)


@pytest.mark.parametrize(("name", "era", "key", "body", "extra", "direct"), CASES, ids=[c[0] for c in CASES])
async def test_the_direct_path_answers_as_the_sdk(
    pair: dict[bool, EmbeddedMcpServer], name: str, era: str, key: str | None, body: Any,
    extra: dict[str, str], direct: bool,
) -> None:
    # "other-tenant" opens its session as acme and calls as beta: the session belongs to another credential.
    owner = "key-acme" if name == "other-tenant" else None
    fast = pair[True]
    assert fast.parts.direct is not None
    before = fast.parts.direct.answered
    got = await _answer(fast, era, key, body, extra, owner)
    expected = await _answer(pair[False], era, key, body, extra, owner)
    assert got == expected
    assert fast.parts.direct.answered - before == (1 if direct else 0)
    assert pair[False].parts.direct is not None and pair[False].parts.direct.answered == 0
