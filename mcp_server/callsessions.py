"""Upstream sessions for federated calls: one call at a time per session, reused only when clean.

A federated call never runs on the ToolSet's shared (discovery) session. It leases a
:class:`CallSession`: an upstream MCP session owned by its own task (so a caller's cancellation
cannot tear its transport down before ``notifications/cancelled`` is written), whose sampling,
elicitation and log callbacks go to the current lease's :class:`~mcp_server.relay.CallRelay`.

A session that finished its call cleanly goes back to a small idle pool (at most ``max_idle`` per
ToolSet, for at most ``idle_ttl_s``) so the next call skips the handshake. A session that saw
anything wrong — an error, a timeout, a cancellation, garbage on the stream — is closed, never
reused: whatever one caller provoked stays with that caller's call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import mcp_types as types
from mcp.client import Client
from mcp.client.session import ClientRequestContext

from mcp_server.relay import CallRelay

__all__ = ["CallSession", "CallSessionPool"]

_T = TypeVar("_T")
_CANCEL_GRACE_S = 1.0  # for notifications/cancelled to reach the upstream before the session closes


class StreamsTransport:
    """Wraps already-open transport streams as the Transport the SDK client enters."""

    def __init__(self, streams: Any) -> None:
        self._streams = streams

    async def __aenter__(self) -> Any:
        return self._streams

    async def __aexit__(self, *exc: object) -> None:
        return None


class CallSession:
    """One upstream session in its own task, leased to one call at a time."""

    def __init__(self, opener: Callable[[], AbstractAsyncContextManager[Any]], timeout_s: float) -> None:
        self._opener = opener
        self._timeout_s = timeout_s
        self.relay: CallRelay | None = None
        self.tainted = False  # anything unexpected happened: never reuse
        self.idle_since = 0.0
        self._client: Client | None = None
        self._ready = asyncio.Event()
        self._close = asyncio.Event()
        self._error: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._run(), name="federated-call-session")

    @property
    def alive(self) -> bool:
        return not self.tainted and not self._task.done() and self._client is not None

    async def _run(self) -> None:
        try:
            async with self._opener() as streams:
                client = Client(StreamsTransport(streams), mode="legacy", message_handler=self._on_message,
                                read_timeout_seconds=self._timeout_s, cache=None,
                                sampling_callback=self._sampling, elicitation_callback=self._elicitation,
                                logging_callback=self._log, input_required_max_rounds=4)
                async with client:
                    self._client = client
                    self._ready.set()
                    await self._close.wait()
        except BaseException as exc:  # reported to the call waiting on open(); cancellation ends the task
            self._error = exc
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.tainted = True
            self._client = None
            self._ready.set()

    async def open(self) -> None:
        """Until the handshake is done; raises what made it fail."""
        await self._ready.wait()
        if self._client is None:
            raise self._error or ConnectionError("the upstream session closed while opening")

    def close(self) -> None:
        self.tainted = True
        self._close.set()

    def kill(self) -> None:
        self.tainted = True
        self._task.cancel()

    # -- callbacks, for whichever call holds the lease ------------------------------------------
    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.tainted = True  # garbage or a broken stream: this session is done after the call

    async def _sampling(self, context: ClientRequestContext,
                        params: types.CreateMessageRequestParams) -> types.CreateMessageResult | types.ErrorData:
        relay = self.relay
        return await (relay or CallRelay(None)).sampling(context, params)

    async def _elicitation(self, context: ClientRequestContext,
                           params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        relay = self.relay
        return await (relay or CallRelay(None)).elicitation(context, params)

    async def _log(self, params: types.LoggingMessageNotificationParams) -> None:
        relay = self.relay
        if relay is not None:
            await relay.log(params)

    # -- one call --------------------------------------------------------------------------------
    async def call(self, name: str, arguments: Mapping[str, Any], relay: CallRelay) -> types.CallToolResult:
        """Run one tool call on this session (the caller holds the lease)."""
        return await self.run(lambda client: client.call_tool(
            name, dict(arguments), progress_callback=relay.progress, read_timeout_seconds=self._timeout_s), relay)

    async def run(self, request: Callable[[Client], Awaitable[_T]], relay: CallRelay) -> _T:
        """Run one request on this session (a tool call, a resource read, a prompt get)."""
        client = self._client
        if client is None:
            raise ConnectionError("the upstream session is closed")
        self.relay = relay
        call = asyncio.ensure_future(request(client))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            # The caller cancelled: abandoning the request makes the SDK send notifications/cancelled
            # upstream (from the session's own task, which this cancellation does not reach).
            self.tainted = True
            call.cancel()
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(_CANCEL_GRACE_S):
                    await call
            raise
        except BaseException:
            self.tainted = True
            raise
        finally:
            self.relay = None


class CallSessionPool:
    """Idle clean sessions of one ToolSet."""

    def __init__(self, opener: Callable[[], AbstractAsyncContextManager[Any]], timeout_s: float, *,
                 max_idle: int = 4, idle_ttl_s: float = 30.0) -> None:
        self._opener = opener
        self._timeout_s = timeout_s
        self._max_idle = max_idle
        self._ttl = idle_ttl_s
        self._idle: list[CallSession] = []
        self._all: set[CallSession] = set()
        self.opened = 0  # sessions opened (for tests and figures)

    async def lease(self) -> CallSession:
        now = time.monotonic()
        while self._idle:
            session = self._idle.pop()
            if session.alive and now - session.idle_since < self._ttl:
                return session
            self._drop(session)
        session = CallSession(self._opener, self._timeout_s)
        self._all.add(session)
        self.opened += 1
        try:
            await session.open()
        except BaseException:
            self._drop(session)
            raise
        return session

    def give_back(self, session: CallSession) -> None:
        if session.alive and len(self._idle) < self._max_idle:
            session.idle_since = time.monotonic()
            self._idle.append(session)
        else:
            self._drop(session)

    def _drop(self, session: CallSession) -> None:
        self._all.discard(session)
        if session.tainted:
            # Tainted sessions may have a request in flight or a broken stream: do not wait on them.
            session.close()
            asyncio.get_running_loop().call_later(_CANCEL_GRACE_S + 1, session.kill)
        else:
            session.close()

    def close(self) -> None:
        """Close every session (the ToolSet changed, went away or reconnected)."""
        self._idle.clear()
        for session in list(self._all):
            session.kill()
        self._all.clear()
