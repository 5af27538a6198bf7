"""Upstream MCP servers for federation tests, served over Streamable HTTP on loopback.

- :func:`sdk_upstream`: an MCP server built with the official SDK whose tools report progress,
  log, ask for sampling and elicitation, stall, and flood notifications.
- :func:`hostile_upstream`: a hand-written JSON-RPC endpoint that lists tools normally and then
  misbehaves on each call (garbage, wrong response ids, a stream closed mid-call, a stall).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.message import ServerMessageMetadata
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

__all__ = ["Served", "hostile_upstream", "sdk_upstream", "serve_asgi"]


class Served:
    """A running upstream: its URL and what it observed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.cancelled: list[str] = []  # tools whose run was cancelled
        self.answers: list[Any] = []  # what callers answered to sampling / elicitation


class _Confirm(BaseModel):
    confirm: bool


def _build_sdk(served: Served) -> MCPServer:
    mcp = MCPServer("sdk-upstream")

    @mcp.tool()
    async def echo(text: str) -> str:
        """Answer with the text."""
        return text

    @mcp.tool()
    async def progress_and_log(steps: int, ctx: Context) -> str:
        """Report progress and log a message per step."""
        for i in range(steps):
            await ctx.report_progress(i + 1, steps, f"step {i + 1}")
            await ctx.info(f"did step {i + 1}")
        return "done"

    @mcp.tool()
    async def ask_model(prompt: str, ctx: Context) -> str:
        """Ask the client's model (sampling) and answer with its text."""
        result = await ctx.request_context.session.create_message(
            messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
            max_tokens=50, related_request_id=ctx.request_id)
        content = result.content
        text = content.text if isinstance(content, types.TextContent) else str(content)
        served.answers.append(text)
        return f"model said: {text}"

    @mcp.tool()
    async def ask_model_impatiently(prompt: str, ctx: Context) -> str:
        """Ask the client's model but give up after half a second (cancelling the request)."""
        request = types.CreateMessageRequest(params=types.CreateMessageRequestParams(
            messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
            max_tokens=5))
        try:
            await ctx.request_context.session.send_request(
                request, types.CreateMessageResult, request_read_timeout_seconds=0.5,
                metadata=ServerMessageMetadata(related_request_id=ctx.request_id))
        except Exception as exc:
            return f"gave up: {type(exc).__name__}"
        return "answered"

    @mcp.tool()
    async def ask_user(question: str, ctx: Context) -> str:
        """Ask the user (elicitation) to confirm."""
        result = await ctx.elicit(question, _Confirm)
        served.answers.append(result.action)
        data = getattr(result, "data", None)
        return f"{result.action}:{data.confirm if data is not None else '-'}"

    @mcp.tool()
    async def stall(seconds: float) -> str:
        """Sleep (and record a cancellation)."""
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            served.cancelled.append("stall")
            raise
        return "woke"

    @mcp.tool()
    async def flood(count: int, ctx: Context) -> str:
        """Send ``count`` log notifications."""
        for i in range(count):
            await ctx.info(f"flood {i}")
        return "flooded"

    @mcp.resource("doc://guide", name="guide", mime_type="text/plain")
    def guide() -> str:
        """The guide."""
        return "read the guide"

    @mcp.resource("doc://items/{item}", name="item", mime_type="text/plain")
    def item(item: str) -> str:
        """One item."""
        return f"item {item}"

    @mcp.prompt(name="greet")
    def greet(who: str) -> str:
        """Greet someone."""
        return f"Say hello to {who}."

    return mcp


def _socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, lifespan: str, port: int = 0) -> AsyncIterator[str]:
    """Serve an ASGI MCP app on loopback (a free port unless ``port``); yields its ``/mcp`` URL, stops it on exit."""
    sock = _socket(port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not task.done(), "the upstream did not start"
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), 5)
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        sock.close()


@contextlib.asynccontextmanager
async def sdk_upstream() -> AsyncIterator[Served]:
    """The SDK-built upstream (stateful Streamable HTTP, SSE answers)."""
    served = Served("")
    app = _build_sdk(served).streamable_http_app(host="127.0.0.1")
    async with serve_asgi(app, "on") as url:
        served.url = url
        yield served


HOSTILE_TOOLS = ("garbage", "wrong_id", "close", "stall", "flood_then_garbage")


async def _body(receive: Receive) -> bytes:
    chunks = b""
    while True:
        message = await receive()
        chunks += message.get("body", b"")
        if not message.get("more_body"):
            return chunks


async def _answer(send: Send, status: int, body: bytes, ctype: str = "application/json",
                  more: bool = False) -> None:
    headers = [(b"content-type", ctype.encode()), (b"mcp-session-id", b"hostile")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": more})


def _result(rid: Any, result: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "result": result}).encode()


async def _hostile(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":
        await _answer(send, 405, b"")
        return
    message = json.loads(await _body(receive))
    rid, method = message.get("id"), message.get("method")
    if rid is None:  # a notification
        await _answer(send, 202, b"")
        return
    if method == "initialize":
        await _answer(send, 200, _result(rid, {
            "protocolVersion": message["params"]["protocolVersion"], "capabilities": {"tools": {}},
            "serverInfo": {"name": "hostile", "version": "0"}}))
    elif method == "tools/list":
        schema = {"type": "object"}
        await _answer(send, 200, _result(rid, {"tools": [
            {"name": n, "description": n, "inputSchema": schema} for n in HOSTILE_TOOLS]}))
    elif method == "ping":
        await _answer(send, 200, _result(rid, {}))
    elif method == "tools/call":
        name = message["params"]["name"]
        if name == "garbage":
            await _answer(send, 200, b"\x00not json{{{")
        elif name == "wrong_id":
            await _answer(send, 200, _result(f"not-{rid}", {"content": [{"type": "text", "text": "x"}]}))
        elif name == "close":
            # Starts an SSE stream, then ends it without an answer.
            await _answer(send, 200, b": hello\n\n", "text/event-stream", more=True)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif name == "flood_then_garbage":
            events = b"".join(
                b"event: message\ndata: " + json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                                                      "params": {"level": "info", "data": i}}).encode() + b"\n\n"
                for i in range(2000))
            await _answer(send, 200, events + b"event: message\ndata: {garbage\n\n", "text/event-stream")
        else:  # stall
            await asyncio.sleep(30)
            await _answer(send, 200, _result(rid, {"content": []}))
    else:
        await _answer(send, 200, json.dumps({"jsonrpc": "2.0", "id": rid,
                                             "error": {"code": -32601, "message": "no"}}).encode())


@contextlib.asynccontextmanager
async def hostile_upstream() -> AsyncIterator[Served]:
    async with serve_asgi(_hostile, "off") as url:
        yield Served(url)
