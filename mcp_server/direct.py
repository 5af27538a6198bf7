"""The direct path for plain ``tools/call`` POSTs on Streamable HTTP in JSON-response mode.

The SDK serves each POST through a per-request memory stream, a JSON-RPC dispatcher task, its
middleware chain and a pydantic round trip of the request, which cost about as much CPU as the
whole governed call behind it (identity, policy, limits, upstream, metering). A ``tools/call``
whose answer is one JSON body needs none of that machinery: :class:`DirectToolCalls` answers it
from the request the HTTP layer already parsed (:mod:`mcp_server.bodies`) and authenticated
(:mod:`mcp_server.http`), through the same :class:`~mcp_server.gateway.ToolGateway` call. The
result of a local HTTP tool is built by :func:`~mcp_server.gateway.result_from_upstream` in the
exact shape the SDK's per-version serializer would give it (text, image or audio content,
``isError``, an object ``structuredContent``), so it is not validated and dumped a second time.

It takes only requests whose answer it can give exactly as the SDK would; anything else goes to
the SDK untouched: SSE answers, batches, other methods, federated tools (they relay the upstream's
requests into the caller's session), progress tokens or other ``_meta``, ``Mcp-Param-*`` headers,
protocol versions other than 2025-06-18, 2025-11-25 and 2026-07-28, an unknown, foreign or closed
session, any envelope the 2026-07-28 validation ladder would refuse, and every request when
tracing is on (the SDK opens a span per message). In JSON-response mode the SDK drops every
message related to a request but its response, so the client sees nothing the SDK would have
sent (``tests/unit/mcp_server/test_mcp_direct.py`` compares both paths answer for answer).
"""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PARAM_HEADER_PREFIX,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundModernRoute,
    classify_inbound_request,
    validate_mcp_param_headers,
)
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, SERVER_INFO_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_server.bodies import parsed_body
from mcp_server.catalog import InvalidArguments
from mcp_server.gateway import Caller, ToolGateway, UnknownTool
from mcp_server.server import CALLER_SCOPE_KEY
from mcp_server.sessionstate import open_session, serving

__all__ = ["DirectToolCalls"]

_log = logging.getLogger("stoa.mcp.direct")

# Handshake-era versions whose CallToolResult shape the SDK serializes for us (structuredContent).
_SESSION_VERSIONS = frozenset({"2025-06-18", "2025-11-25"})
_PARAM_KEYS = frozenset({"name", "arguments", "_meta"})
_MODERN_META = frozenset({"io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientCapabilities",
                          "io.modelcontextprotocol/clientInfo"})
_PARAM_PREFIX = MCP_PARAM_HEADER_PREFIX.lower()
_JSON = b"application/json"
_HEADER_KEYWORD = '"x-mcp-header"'
_ROUTING_HEADERS = frozenset(n.lower().encode() for n in (MCP_PROTOCOL_VERSION_HEADER, MCP_METHOD_HEADER,
                                                          MCP_NAME_HEADER))


@dataclass(slots=True)
class _Call:
    id: int | str
    name: str
    arguments: dict[str, Any] | None
    version: str
    caller: Caller
    session: Any | None  # the SDK transport of a handshake-era session
    session_id: str


_ACCEPTS: dict[str, bool] = {}  # clients send a handful of Accept values: each is read once


def _accepts_json(accept: str) -> bool:
    # As the SDK's check_accept_headers (RFC 7231 wildcards).
    known = _ACCEPTS.get(accept)
    if known is None:
        types = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
        known = bool(types & {"*/*", "application/*", "application/json"})
        if len(_ACCEPTS) < 256:
            _ACCEPTS[accept] = known
    return known


def _is_json(content_type: str) -> bool:
    return any(part.strip() == "application/json" for part in content_type.split(";", 1)[0].split(","))


class DirectToolCalls:
    """ASGI in front of the Streamable HTTP app: answers plain ``tools/call`` POSTs, passes the rest."""

    def __init__(self, app: ASGIApp, gateway: ToolGateway, sessions: StreamableHTTPSessionManager,
                 server: Server[Any], *, enabled: bool) -> None:
        self.app = app
        self._gateway = gateway
        self._sessions = sessions
        self._enabled = enabled
        self._server_info = server.server_info_stamp  # serialized per answer, never mutated
        self.answered = 0  # calls answered here (tests, the benchmark)
        self._header_schemas: dict[int, tuple[Any, bool]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = self._plain_call(scope) if self._enabled and scope.get("method") == "POST" else None
        if call is None:
            await self.app(scope, receive, send)
            return
        self.answered += 1
        with serving(call.session) if call.session is not None else nullcontext():
            status, body = await self._answer(call)
        headers = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())]
        if call.session_id:
            headers.append((b"mcp-session-id", call.session_id.encode("latin-1")))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # -- which requests ---------------------------------------------------------------------
    def _plain_call(self, scope: Scope) -> _Call | None:
        """The call, when this request is one the direct path answers exactly as the SDK; else None."""
        message = parsed_body(scope)
        caller = scope.get(CALLER_SCOPE_KEY)
        if not isinstance(message, dict) or not isinstance(caller, Caller) or message.get("method") != "tools/call":
            return None
        rid = message.get("id")
        params = message.get("params")
        if message.get("jsonrpc") != "2.0" or isinstance(rid, bool) or not isinstance(rid, int | str) \
                or len(message) != 4 or not isinstance(params, dict) or not params.keys() <= _PARAM_KEYS:
            return None
        name = params.get("name")
        arguments = params.get("arguments")
        meta = params.get("_meta")
        if not isinstance(name, str) or not (arguments is None or isinstance(arguments, dict)):
            return None
        headers = caller.headers
        if not _accepts_json(headers.get("accept", "")) or not _is_json(headers.get("content-type", "")):
            return None
        entry = self._gateway.find(caller.principal, name)
        if entry is None or entry.tool.federated:
            return None  # unknown tools and relays: the SDK's answer and machinery
        version = headers.get("mcp-protocol-version", "")
        session_id = headers.get("mcp-session-id", "")
        session = None
        if version in MODERN_PROTOCOL_VERSIONS:
            if session_id or not isinstance(meta, dict) or not meta.keys() <= _MODERN_META \
                    or not self._modern_envelope_ok(scope, message, headers, entry.wire.get("inputSchema"),
                                                    arguments):
                return None
        elif version in _SESSION_VERSIONS:
            if meta or not session_id:
                return None
            session = open_session(self._sessions, session_id, scope.get("user"))
            if session is None:
                return None
        else:
            return None
        return _Call(rid, name, arguments, version, caller, session, session_id)

    def _modern_envelope_ok(self, scope: Scope, message: dict[str, Any], headers: dict[str, str], schema: Any,
                            arguments: dict[str, Any] | None) -> bool:
        """The 2026-07-28 ladder the SDK runs: routing headers agree with the body, no Mcp-Param headers."""
        if any(h.startswith(_PARAM_PREFIX) for h in headers):
            return False
        # find_duplicated_routing_header's question, on the raw (lower-case, per ASGI) header names.
        routing = [k for k, _ in scope["headers"] if k in _ROUTING_HEADERS]
        if len(routing) != len(set(routing)):
            return False
        if not isinstance(classify_inbound_request(message, headers=headers), InboundModernRoute):
            return False
        # A schema declaring x-mcp-header parameters needs headers this request does not carry.
        return not arguments or not self._declares_headers(schema) \
            or validate_mcp_param_headers(schema, arguments, {}) is None

    def _declares_headers(self, schema: Any) -> bool:
        """Whether an input schema names any x-mcp-header (once per schema object, not per call)."""
        known = self._header_schemas.get(id(schema))
        if known is not None and known[0] is schema:
            return known[1]
        declares = _HEADER_KEYWORD in json.dumps(schema, default=str)
        if len(self._header_schemas) >= 4096:  # bounded: schemas are per tool version
            self._header_schemas.clear()
        self._header_schemas[id(schema)] = (schema, declares)  # holding the schema keeps its id unique
        return declares

    # -- the answer -------------------------------------------------------------------------
    async def _answer(self, call: _Call) -> tuple[int, bytes]:
        try:
            result = await self._gateway.call(call.caller, call.name, call.arguments)
        except UnknownTool:  # removed from the registry since the lookup
            return self._error(call, INVALID_PARAMS, f"Unknown tool: {call.name}")
        except InvalidArguments as exc:
            return self._error(call, INVALID_PARAMS, f"Invalid arguments for tool {call.name}: {exc}",
                               {"field": exc.field, "reason": exc.reason})
        except Exception:  # as the SDK: a handler bug is an internal error, not a dropped connection
            _log.exception("tools/call %s failed", call.name)
            return self._error(call, INTERNAL_ERROR, "Internal error")
        wire = result.as_mcp()
        if call.version in MODERN_PROTOCOL_VERSIONS:
            wire["resultType"] = "complete"
            wire["_meta"] = {SERVER_INFO_META_KEY: self._server_info}  # the SDK's 2026-07-28 stamp
        return 200, _dump({"jsonrpc": "2.0", "id": call.id, "result": wire})

    @staticmethod
    def _error(call: _Call, code: int, message: str, data: Any = None) -> tuple[int, bytes]:
        error: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        # Handshake eras answer JSON-RPC errors 200; 2026-07-28 maps codes to HTTP statuses.
        status = ERROR_CODE_HTTP_STATUS.get(code, 200) if call.version in MODERN_PROTOCOL_VERSIONS else 200
        return status, _dump({"jsonrpc": "2.0", "id": call.id, "error": error})


def _dump(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
