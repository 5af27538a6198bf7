"""One body rule for every MCP entry: read it bounded, parse it bounded, before any handler runs.

Every POST under ``/mcp`` (Streamable HTTP, the SSE transport's message POST,
REST tool calls) passes here. The body is read while counting: a declared
``content-length`` over ``mcp.max_body_bytes`` is answered 413 before a byte
is read, a streamed (chunked) body is cut off at the limit with 413, and a body
that has not fully arrived within ``mcp.body_timeout_s`` gets 408, so a slow
sender holds no buffer for long. The body is then parsed once with
:mod:`link.jsonsafe` (depth and size bounded, duplicate keys refused, so the
SDK's parser and ours cannot read different messages); a refused document is
answered 400, as a JSON-RPC parse error on the JSON-RPC entries. Handlers get
the same bytes replayed, and the parsed document in the scope.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from link.jsonsafe import DEFAULT_MAX_DEPTH, JsonRefused, loads

__all__ = ["BODY_JSON_SCOPE_KEY", "BoundedBody", "parsed_body"]

BODY_JSON_SCOPE_KEY = "stoa.body_json"
_REST_PREFIX = "/mcp/v1/"
_PARSE_ERROR = -32700
_INVALID_REQUEST = -32600


def parsed_body(scope: Scope) -> Any:
    """The document :class:`BoundedBody` parsed for this request (``None`` for an empty body)."""
    return scope.get(BODY_JSON_SCOPE_KEY)


def _is_rpc(path: str) -> bool:
    return not path.startswith(_REST_PREFIX)


def _wants_json(path: str, content_type: str) -> bool:
    # Streamable HTTP answers other media types 415 itself (and then reads nothing); the SSE message
    # POST and REST read any body as JSON, so theirs is always parsed here.
    return path != "/mcp" or "json" in content_type


async def _answer(send: Send, path: str, status: int, reason: str, message: str, rpc_code: int) -> None:
    doc: dict[str, Any]
    if _is_rpc(path):
        doc = {"jsonrpc": "2.0", "id": None,
               "error": {"code": rpc_code, "message": message, "data": {"reason": reason}}}
    else:
        doc = {"error": reason, "message": message}
    body = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BoundedBody:
    """ASGI middleware: bounded reading and bounded parsing of MCP request bodies."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float = 30.0,
                 max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.app = app
        self._max = max_body_bytes
        self._timeout = body_timeout_s
        self._depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or not path.startswith("/mcp"):
            await self.app(scope, receive, send)
            return
        declared = content_type = ""
        for k, v in scope["headers"]:
            if k == b"content-length":
                declared = v.decode("latin-1").strip()
            elif k == b"content-type":
                content_type = v.decode("latin-1").lower()
        too_large = f"the request body is larger than {self._max} bytes"
        if declared.isdigit() and int(declared) > self._max:
            await _answer(send, path, 413, "request_too_large", too_large, _INVALID_REQUEST)
            return
        try:
            async with asyncio.timeout(self._timeout):
                body, trailing = await self._read(receive)
        except TimeoutError:
            await _answer(send, path, 408, "request_timeout",
                          f"the request body did not arrive within {self._timeout:g}s", _INVALID_REQUEST)
            return
        if body is None:
            if trailing is not None:
                await _answer(send, path, 413, "request_too_large", too_large, _INVALID_REQUEST)
            return  # the client went away
        if body.strip() and _wants_json(path, content_type):
            try:
                scope[BODY_JSON_SCOPE_KEY] = loads(body, max_depth=self._depth, max_bytes=self._max,
                                                   reject_duplicate_keys=True)
            except JsonRefused as exc:
                await _answer(send, path, 400, exc.reason, f"Parse error: {exc}", _PARSE_ERROR)
                return
        replay: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

        async def replaying() -> Message:
            if replay:
                return replay.pop()
            return await receive()

        await self.app(scope, replaying, send)

    async def _read(self, receive: Receive) -> tuple[bytes | None, Message | None]:
        """(body, None); (None, last message) when over the limit; (None, None) on disconnect."""
        chunks = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None, None
            chunks += message.get("body", b"")
            if len(chunks) > self._max:
                return None, message  # stop reading: the rest is never buffered
            if not message.get("more_body", False):
                return bytes(chunks), None
