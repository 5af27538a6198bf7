"""Hostile request bodies against the real MCP HTTP server, on every entry that takes one.

Entries: Streamable HTTP (``POST /mcp``), the SSE transport's message POST
(``POST /mcp/messages/?session_id=…`` of an open ``GET /mcp/sse`` session) and
REST (``POST /mcp/v1/tools/{name}``). Each gets bodies at and over
``mcp.max_body_bytes`` (declared, chunked, lying ``content-length``, slow) and
a corpus of hostile JSON; every answer is a 4xx with a JSON reason (a JSON-RPC
error on the JSON-RPC entries), never a 5xx, and nothing refused reaches an
upstream. Hostile upstream answers come back as clean tool results.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.rawhttp import RawExchange, RawResponse
from tests.harness.upstream import EchoUpstream
from tests.unit.mcp_server.support import settings, tool

pytestmark = pytest.mark.integration

# Large enough for the 100,000 brackets; over-limit bodies in these tests exceed it by a few
# bytes only, so the server never closes on unread data (which a reset would make a lost answer).
LIMIT = 128 * 1024
DEPTH = 64
NEST_SCHEMA = {"type": "object", "properties": {"x": {"$ref": "#"}}}
RPC_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}

# Hostile upstream answers: path -> body (all served as application/json).
HOSTILE_ANSWERS = {
    "/deep": b"[" * 100_000,
    "/deep-closed": b"[" * 5_000 + b"]" * 5_000,
    "/nan": b'{"a": NaN}',
    "/huge-float": b'{"a": 1e999999}',
    "/huge-int": b'{"a": ' + b"7" * 10_000 + b"}",
    "/dup": b'{"a": 1, "a": 2}',
    "/bad-utf8": b'{"a": "\xff\xfe"}',
    "/lone-surrogate": b'{"a": "\\ud800"}',
}


class _Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        return

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = HOSTILE_ANSWERS.get(self.path.split("?")[0], b"{}")
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer


@contextlib.contextmanager
def hostile_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="hostile-upstream")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class Entry:
    name: str
    path: str
    headers: dict[str, str]
    rpc: bool

    def envelope(self, arguments_json: bytes) -> bytes:
        """A valid call of the public ``echo`` tool whose arguments are ``arguments_json`` (raw bytes)."""
        if not self.rpc:
            return arguments_json
        return (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":'
                + arguments_json + b"}}")

    def benign(self) -> bytes:
        if self.rpc and self.name == "streamable-http":
            return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}}).encode()
        if self.rpc:
            return b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
        return b'{"pad":""}'

    def padded(self, size: int) -> bytes:
        """A valid body of exactly ``size`` bytes (whitespace padding)."""
        body = self.benign()
        assert len(body) <= size
        return body + b" " * (size - len(body))


class World:
    def __init__(self, mcp: EmbeddedMcpServer, up: EchoUpstream, sse_path: str) -> None:
        self.mcp = mcp
        self.up = up
        self.entries = {
            "streamable-http": Entry("streamable-http", "/mcp", RPC_HEADERS, True),
            "sse": Entry("sse", sse_path, {"content-type": "application/json"}, True),
            "rest": Entry("rest", "/mcp/v1/tools/echo", {"content-type": "application/json"}, False),
        }

    async def post(self, entry: Entry, body: bytes, headers: dict[str, str] | None = None) -> RawResponse:
        async with RawExchange(self.mcp.port) as x:
            await x.head("POST", entry.path, {**entry.headers, "content-length": str(len(body)),
                                               **(headers or {})})
            await x.send(body)
            return await x.response()


async def _sse_session(base_url: str, ready: asyncio.Future[str], stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=30) as http, http.stream("GET", f"{base_url}/mcp/sse") as resp:
        async def read() -> None:
            async for line in resp.aiter_lines():  # read on: the session lives as long as its stream
                if line.startswith("data: /mcp/messages/") and not ready.done():
                    ready.set_result(line[len("data: "):])

        reader = asyncio.create_task(read())
        await stop.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await reader


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    with EchoUpstream() as up, hostile_upstream() as hostile:
        tools_dir = tmp_path / "tools"
        tools_dir.mkdir()
        docs = [tool("echo", endpoint=f"{up.url}/echo"),
                tool("nest", endpoint=f"{up.url}/nest", inputSchema=NEST_SCHEMA)]
        docs += [tool(f"hostile{p.replace('/', '-')}", endpoint=f"{hostile}{p}", method="GET")
                 for p in HOSTILE_ANSWERS]
        (tools_dir / "t.yaml").write_text(yaml.safe_dump_all(docs))
        s = settings(tmp_path, registry__source="files", registry__path=str(tools_dir),
                     mcp__max_body_bytes=LIMIT, mcp__body_timeout_s=1.0, mcp__max_json_depth=DEPTH)
        async with EmbeddedMcpServer(s) as mcp:
            ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            stop = asyncio.Event()
            task = asyncio.create_task(_sse_session(mcp.base_url, ready, stop))
            try:
                sse_path = await asyncio.wait_for(ready, 10)
                yield World(mcp, up, sse_path)
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)


ENTRIES = ["streamable-http", "sse", "rest"]


def _assert_refused(r: RawResponse, entry: Entry, status: int, reason: str | None = None) -> None:
    assert r.status == status, (r.status, r.body[:300])
    assert r.headers.get("content-type", "").startswith("application/json")
    doc = r.json()
    got = doc["error"]["data"]["reason"] if entry.rpc else doc["error"]
    assert entry.rpc == ("jsonrpc" in doc)
    if reason is not None:
        assert got == reason, doc


# -- the size limit --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ENTRIES)
async def test_a_body_at_the_limit_is_served_and_one_byte_more_is_413(world: World, name: str) -> None:
    entry = world.entries[name]
    at = await world.post(entry, entry.padded(LIMIT))
    async with RawExchange(world.mcp.port) as x:
        await x.head("POST", entry.path, {**entry.headers, "content-length": str(LIMIT + 1)})
        over = await x.response()  # answered on the headers: the body is never read
    assert 200 <= at.status < 300, (at.status, at.body[:200])
    _assert_refused(over, entry, 413, "request_too_large")


@pytest.mark.parametrize("name", ENTRIES)
async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
        world: World, name: str) -> None:
    entry = world.entries[name]
    async with RawExchange(world.mcp.port) as x:
        await x.head("POST", entry.path, {**entry.headers, "content-length": str(LIMIT * 1000)})
        r = await x.response()  # no body byte was sent: the server answered on the headers alone
    _assert_refused(r, entry, 413, "request_too_large")


@pytest.mark.parametrize("name", ENTRIES)
async def test_a_chunked_body_is_cut_off_at_the_limit(world: World, name: str) -> None:
    entry = world.entries[name]
    headers = {**entry.headers, "transfer-encoding": "chunked"}
    async with RawExchange(world.mcp.port) as x:
        await x.head("POST", entry.path, headers)
        for _ in range(LIMIT // 4096):
            await x.chunk(b" " * 4096)
        await x.chunk(b" ")  # one byte over
        # The last chunk is never sent: the answer must come from the limit, not the end of the body.
        r = await x.response()
    _assert_refused(r, entry, 413, "request_too_large")
    async with RawExchange(world.mcp.port) as x:
        await x.head("POST", entry.path, headers)
        body = entry.padded(LIMIT)
        for i in range(0, len(body), 4096):
            await x.chunk(body[i:i + 4096])
        await x.chunk(b"")
        ok = await x.response()
    assert 200 <= ok.status < 300, (ok.status, ok.body[:200])


@pytest.mark.parametrize("name", ENTRIES)
async def test_a_lying_content_length_reads_only_what_was_declared(world: World, name: str) -> None:
    entry = world.entries[name]
    body = entry.envelope(b'{"pad":"' + b"x" * 200 + b'"}')
    async with RawExchange(world.mcp.port) as x:
        await x.head("POST", entry.path, {**entry.headers, "content-length": "40"})
        await x.send(body)
        r = await x.response()
    # The first 40 bytes are a cut-off document: refused as JSON, the rest was never taken as body.
    _assert_refused(r, entry, 400, "invalid_json")
    assert world.up.requests == []


@pytest.mark.parametrize("name", ENTRIES)
async def test_a_slow_body_is_served_while_it_flows_and_408_when_it_stalls(world: World, name: str) -> None:
    entry = world.entries[name]
    body = entry.padded(2048)
    async with RawExchange(world.mcp.port) as x:
        await x.head("POST", entry.path, {**entry.headers, "content-length": str(len(body))})
        for i in range(0, len(body), 512):
            await x.send(body[i:i + 512])
            await asyncio.sleep(0.05)
        flowing = await x.response()
    async with RawExchange(world.mcp.port) as x:
        await x.head("POST", entry.path, {**entry.headers, "content-length": str(len(body))})
        await x.send(body[:100])  # and then nothing: the body timeout (1 s here) answers
        stalled = await x.response()
    assert 200 <= flowing.status < 300, (flowing.status, flowing.body[:200])
    _assert_refused(stalled, entry, 408, "request_timeout")


# -- hostile JSON ----------------------------------------------------------------------------------

def _nest(depth: int) -> bytes:
    return b'{"x":' * depth + b"{}" + b"}" * depth


# name -> (arguments bytes placed in a valid envelope, expected reason)
CORPUS: dict[str, tuple[bytes, str]] = {
    "deep-array": (b"[" * 100_000, "too_deep"),
    "deep-array-closed": (b"[" * 4_000 + b"]" * 4_000, "too_deep"),
    "deep-object": (b'{"a":' * 20_000 + b"1" + b"}" * 20_000, "too_deep"),
    "deep-mixed": (b'[{"a":' * 1_000 + b"1" + b"}]" * 1_000, "too_deep"),
    "just-over-the-depth": (_nest(DEPTH), "too_deep"),
    "brackets-hidden-behind-escaped-quotes": (b'{"a":"\\"' + b"[" * 200 + b'"}' + b"[" * 200, "too_deep"),
    "mismatched-kinds": (b"[}" * 200, "invalid_json"),
    "mismatched-kinds-deep": (b"[" * 2_000 + b"}" * 2_000, "too_deep"),
    "huge-float": (b'{"a":1e999999}', "non_finite_number"),
    "huge-negative-float": (b'{"a":-1e999999}', "non_finite_number"),
    "huge-int": (b'{"a":' + b"9" * 10_000 + b"}", "number_too_long"),
    "nan": (b'{"a":NaN}', "non_finite_number"),
    "infinity": (b'{"a":Infinity}', "non_finite_number"),
    "minus-infinity": (b'{"a":-Infinity}', "non_finite_number"),
    "invalid-utf8": (b'{"a":"\xc3\x28"}', "invalid_utf8"),
    "overlong-utf8": (b'{"a":"\xc0\xaf"}', "invalid_utf8"),
    "utf8-encoded-surrogate": (b'{"a":"\xed\xa0\x80"}', "invalid_utf8"),
    "lone-high-surrogate": (b'{"a":"\\ud800"}', "lone_surrogate"),
    "lone-low-surrogate": (b'{"a":"\\udfff x"}', "lone_surrogate"),
    "reversed-surrogates": (b'{"a":"\\udc00\\ud800"}', "lone_surrogate"),
    "duplicate-keys": (b'{"a":1,"a":2}', "duplicate_key"),
    "truncated": (b'{"a":[1,2', "invalid_json"),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
@pytest.mark.parametrize("name", ENTRIES)
async def test_hostile_json_is_a_4xx_with_a_reason_on_every_entry(world: World, name: str, case: str) -> None:
    entry = world.entries[name]
    arguments, reason = CORPUS[case]
    r = await world.post(entry, entry.envelope(arguments))
    _assert_refused(r, entry, 400, reason)
    if entry.rpc:
        assert r.json()["error"]["code"] == -32700
    assert world.up.requests == []


@pytest.mark.parametrize("name", ENTRIES)
async def test_a_bom_and_duplicate_envelope_keys_are_refused(world: World, name: str) -> None:
    entry = world.entries[name]
    bom = await world.post(entry, b"\xef\xbb\xbf" + entry.benign())
    dup = await world.post(entry, entry.benign()[:-1] + b',"jsonrpc":"2.0"}' if entry.rpc
                           else b'{"pad":"","pad":"x"}')
    _assert_refused(bom, entry, 400, "bom")
    _assert_refused(dup, entry, 400, "duplicate_key")


async def test_an_anonymous_tools_call_cannot_pick_a_tool_name_by_duplicating_it(world: World) -> None:
    # Last-wins in one parser, first-wins in another would let the 401 check and the SDK see two tools.
    body = (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"secret",'
            b'"arguments":{}}}')
    r = await world.post(world.entries["streamable-http"], body)
    _assert_refused(r, world.entries["streamable-http"], 400, "duplicate_key")


async def test_long_strings_within_the_limit_are_accepted(world: World) -> None:
    arguments = b'{"text":"' + "é".encode() * ((LIMIT - 64) // 2) + b'"}'
    r = await world.post(world.entries["rest"], arguments)
    assert r.status == 200, r.body[:200]
    assert len(world.up.requests) == 1


async def test_nesting_at_the_depth_limit_is_validated_against_a_recursive_schema(world: World) -> None:
    # The whole REST body is the arguments object: DEPTH - 1 levels plus the innermost {} = DEPTH.
    ok = await world.post(Entry("rest", "/mcp/v1/tools/nest", {"content-type": "application/json"}, False),
                          _nest(DEPTH - 1))
    bad_type = await world.post(Entry("rest", "/mcp/v1/tools/nest", {"content-type": "application/json"},
                                      False), b'{"x":' * (DEPTH - 2) + b"7" + b"}" * (DEPTH - 2))
    assert ok.status == 200, ok.body[:200]
    assert bad_type.status == 400 and bad_type.json()["error"] == "invalid_params"


async def test_the_server_still_serves_after_the_corpus(world: World) -> None:
    for entry in world.entries.values():
        for arguments, _ in CORPUS.values():
            await world.post(entry, entry.envelope(arguments))
    r = await world.post(world.entries["rest"], b'{"after":"corpus"}')
    assert r.status == 200


# -- hostile upstream answers ----------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(HOSTILE_ANSWERS))
async def test_a_hostile_upstream_answer_is_a_clean_result_never_a_500(world: World, path: str) -> None:
    name = f"hostile{path.replace('/', '-')}"
    async with httpx.AsyncClient(timeout=30) as http:
        rest = await http.post(f"{world.mcp.base_url}/mcp/v1/tools/{name}", json={})
        rpc = await http.post(world.mcp.url, headers={"accept": "application/json, text/event-stream"}, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        session = {"mcp-session-id": rpc.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18",
                   "accept": "application/json, text/event-stream"}
        await http.post(world.mcp.url, headers=session,
                        json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        call = await http.post(world.mcp.url, headers=session, json={
            "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": name, "arguments": {}}})
    assert rest.status_code == 200, rest.text[:200]
    assert "structuredContent" not in rest.json()  # refused JSON is passed on as text only
    assert rest.json()["content"][0]["type"] == "text"
    assert call.status_code == 200, call.text[:200]
    assert "result" in call.json() and "structuredContent" not in call.json()["result"]
