"""Resumable Streamable HTTP sessions: the SDK's session manager with a per-session event store.

- Each session's transport gets its own view of :class:`~mcp_server.events.SessionEventStores`
  (so a ``Last-Event-ID`` can only ever replay the events of the session that sends it),
  and its events are forgotten when the session ends.
- A ``GET`` carrying a ``Last-Event-ID`` this session does not hold (garbage, another
  session's, expired or evicted) is answered ``400`` with a JSON-RPC error saying so, rather
  than with a stream that silently replays nothing: the client knows to re-issue its request.
- :class:`PollLongCalls` closes a call's SSE stream once the call has run for
  ``mcp.sse_poll_after_s`` (SEP-1699 polling), so no connection is held open for a slow
  upstream; the client reconnects with ``Last-Event-ID`` and gets the result from the store.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any
from uuid import uuid4

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.streamable_http import (
    LAST_EVENT_ID_HEADER,
    MCP_SESSION_ID_HEADER,
    EventMessage,
    SSEEvent,
    StreamableHTTPServerTransport,
    StreamId,
)
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, JSONRPCRequest, RequestId
from mcp_types.version import is_version_at_least
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from mcp_server.events import SessionEvents, SessionEventStores

__all__ = ["PollLongCalls", "ResumableSessionManager", "ResumableTransport"]

_log = logging.getLogger(__name__)

_RESUMABLE_FROM = "2025-11-25"  # the first protocol version with priming events (SEP-1699)


class ResumableSessionManager(StreamableHTTPSessionManager):
    """Streamable HTTP sessions whose streams can be resumed with ``Last-Event-ID``."""

    def __init__(self, *, events: SessionEventStores, **kwargs: Any) -> None:
        # The SDK only mints priming events and replays when it has a store; each session
        # replaces this placeholder with its own view in _admit_session.
        super().__init__(event_store=events.session(""), **kwargs)
        events.forget("")
        self.events = events

    def _admit_session(self, requestor: Any) -> StreamableHTTPServerTransport | None:
        # As the SDK's, but with a transport of its own class and store view; the SDK offers no
        # per-session hook, so its (private) session tables are filled here the same way.
        if self.max_sessions is not None and len(self._server_instances) >= self.max_sessions:
            return None
        session_id = uuid4().hex
        transport = ResumableTransport(
            mcp_session_id=session_id, is_json_response_enabled=self.json_response,
            event_store=self.events.session(session_id), security_settings=self.security_settings,
            retry_interval=self.retry_interval, idle_timeout=self.session_idle_timeout,
        )
        if requestor is not None:
            self._session_owners[session_id] = requestor
        self._server_instances[session_id] = transport
        return transport

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        self.events.forget(session_id)
        await super()._discard_session(session_id, transport)

    async def _handle_stateful_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The handshake eras' session path (2026-07-28 has no sessions, hence no resumption).
        if scope.get("method") == "GET":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
            last = headers.get(LAST_EVENT_ID_HEADER)
            session = headers.get(MCP_SESSION_ID_HEADER)
            if last is not None and session is not None and session in self._server_instances \
                    and not self.events.knows(session, last):
                refusal = JSONResponse(
                    {"jsonrpc": "2.0", "id": None, "error": {
                        "code": INVALID_REQUEST,
                        "message": "Last-Event-ID is unknown to this session or has expired; re-issue the request"}},
                    status_code=400)
                await refusal(scope, receive, send)
                return
        await super()._handle_stateful_request(scope, receive, send)


class ResumableTransport(StreamableHTTPServerTransport):
    """A session's transport that decides resumability by what the client implements.

    The SDK primes a POST stream (and offers to close it mid-call) only when the request's
    ``MCP-Protocol-Version`` header is 2025-11-25 or later, because older clients cannot parse a
    priming event. A client that itself asked for 2025-11-25 or later at ``initialize`` can,
    whatever a later request's header says, so the version it declared there counts too.
    """

    _declared: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self._event_store, SessionEvents):
            self._request_streams = _ResumedStreams(self._event_store)

    def _resumable_version(self, version: str) -> str:
        declared = self._declared
        if declared is not None and is_version_at_least(declared, _RESUMABLE_FROM) \
                and not is_version_at_least(version, _RESUMABLE_FROM):
            return declared
        return version

    def _create_session_message(
        self, message: JSONRPCRequest, request: Request, request_id: RequestId, protocol_version: str
    ) -> SessionMessage:
        if message.method == "initialize" and isinstance(message.params, dict):
            self._declared = str(message.params.get("protocolVersion", ""))
        return super()._create_session_message(message, request, request_id,
                                               self._resumable_version(protocol_version))

    async def _mint_priming_event(self, stream_id: StreamId, protocol_version: str) -> SSEEvent | None:
        return await super()._mint_priming_event(stream_id, self._resumable_version(protocol_version))


class PollLongCalls:
    """Server middleware: close the SSE stream of a ``tools/call`` still running after ``after_s``.

    Only offered by the SDK when the session can resume (an event store, protocol 2025-11-25 or
    later, an SSE response); the call itself keeps running and its result is stored for replay.
    """

    def __init__(self, after_s: float) -> None:
        self._after_s = after_s

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        close = ctx.close_sse_stream
        if close is None or ctx.method != "tools/call":
            return await call_next(ctx)
        async def cut_after_deadline() -> None:
            await anyio.sleep(self._after_s)
            with contextlib.suppress(Exception):  # the stream may already be gone
                await close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(cut_after_deadline)
            try:
                result = await call_next(ctx)
            finally:
                tg.cancel_scope.cancel()
        return result


_Pair = tuple[MemoryObjectSendStream[EventMessage], MemoryObjectReceiveStream[EventMessage]]


class _ResumedStreams(dict[RequestId, _Pair]):
    """A transport's live request streams, closing the SDK's replay-to-live-tail window.

    On a ``GET`` with ``Last-Event-ID`` the SDK replays the stored events, sends a new priming
    event to the client and only then registers the stream for live events; the message router
    stores whatever the session sends in between but finds no stream to send it on, so a client
    that resumed would never see it (it then holds later ids, so a second resume skips it too).
    Here the stream, when registered, first gets what was stored since its replay ended, in order:
    registration and this hand-over are one step, so nothing comes twice or is overtaken.
    """

    def __init__(self, events: SessionEvents) -> None:
        super().__init__()
        self._events = events

    def __contains__(self, stream: object) -> bool:
        present = super().__contains__(stream)
        if present and isinstance(stream, str | int):
            self._events.forget_replay(str(stream))  # a live connection already takes what comes
        return present

    def __setitem__(self, stream: RequestId, pair: _Pair) -> None:
        super().__setitem__(stream, pair)
        missed = self._events.missed_since_replay(str(stream))
        for handed, message in enumerate(missed):
            try:
                pair[0].send_nowait(message)
            except anyio.WouldBlock:
                # More than the stream buffers (16) within the window: the rest stay in the store only,
                # for a resume from an id before them.
                _log.warning("resumed stream %s: %d events stored during its replay were not sent on it",
                             stream, len(missed) - handed)
                return
