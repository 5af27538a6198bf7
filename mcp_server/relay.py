"""Relaying one federated call's protocol traffic to the client that made it.

While a federated tool runs, its upstream MCP server may send progress and
log notifications and ask for sampling (``sampling/createMessage``) or
elicitation (``elicitation/create``). A :class:`CallRelay` is bound to the
*calling* client's request (its :class:`ServerRequestContext`), so what the
upstream sends during the call reaches that client only, on that request's
stream, and the client's answers go back to the upstream.

Bounded: each relayed request has a timeout, and a call relays at most
``max_notifications`` notifications (the rest are dropped and counted). A
client that did not declare the capability gets the upstream's request
refused with a JSON-RPC error (``MISSING_REQUIRED_CLIENT_CAPABILITY``), so the
upstream decides how its tool fails, for that caller only.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from mcp.client.session import ClientRequestContext
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp.shared.message import ServerMessageMetadata

__all__ = ["CALL_CONTEXT", "CALL_LOG_FILTER", "CallRelay", "RelayLimits"]

_log = logging.getLogger("stoa.mcp.relay")

# The MCP request being handled (set by the tools/call handler), for the federation to relay into.
CALL_CONTEXT: contextvars.ContextVar[ServerRequestContext[Any, Any] | None] = contextvars.ContextVar(
    "stoa_mcp_call_context", default=None)
# The calling session's ``logging/setLevel`` filter: relayed upstream logs honour it like Link's own.
CALL_LOG_FILTER: contextvars.ContextVar[Callable[[ServerRequestContext[Any, Any], Any], bool] | None] = \
    contextvars.ContextVar("stoa_mcp_call_log_filter", default=None)


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """How much one federated call may relay."""

    request_timeout_s: float = 60.0  # a sampling/elicitation request waiting for the caller
    max_notifications: int = 256  # progress + log notifications relayed per call


class CallRelay:
    """The calling client's side of one federated call (callbacks for the upstream session)."""

    def __init__(self, ctx: ServerRequestContext[Any, Any] | None, limits: RelayLimits | None = None) -> None:
        self._ctx = ctx
        self._limits = limits or RelayLimits()
        self.relayed = 0
        self.dropped = 0
        self.refused = 0
        self._wants_progress = ctx is not None and progress_token_from_params(ctx.params) is not None

    # -- capabilities ---------------------------------------------------------------------
    def _accepts(self, capability: types.ClientCapabilities) -> bool:
        ctx = self._ctx
        if ctx is None or ctx.request_id is None:
            return False
        try:
            return ctx.session.can_send_request and ctx.session.check_client_capability(capability)
        except Exception:  # a connection without capabilities or back-channel cannot be asked
            return False

    def _refuse(self, what: str) -> types.ErrorData:
        self.refused += 1
        return types.ErrorData(code=types.MISSING_REQUIRED_CLIENT_CAPABILITY,
                               message=f"the calling client does not accept {what} requests")

    async def _ask(self, request: types.ServerRequest, result: type[Any]) -> Any:
        ctx = self._ctx
        assert ctx is not None and ctx.request_id is not None
        timeout = self._limits.request_timeout_s
        try:
            with anyio.fail_after(timeout):
                return await ctx.session.send_request(
                    request, result, request_read_timeout_seconds=timeout,
                    metadata=ServerMessageMetadata(related_request_id=ctx.request_id))
        except MCPError as exc:
            return exc.error
        except TimeoutError:
            return types.ErrorData(code=types.REQUEST_TIMEOUT,
                                   message=f"the calling client did not answer within {timeout:g}s")
        except Exception as exc:  # the caller went away or answered unusably: the upstream gets an error
            _log.info("relayed %s failed: %s", request.method, type(exc).__name__)
            return types.ErrorData(code=types.INTERNAL_ERROR, message="the calling client could not answer")

    # -- upstream -> caller requests --------------------------------------------------------
    async def sampling(self, context: ClientRequestContext,
                       params: types.CreateMessageRequestParams) -> types.CreateMessageResult | types.ErrorData:
        """``sampling/createMessage`` from the upstream, asked of the calling client."""
        if not self._accepts(types.ClientCapabilities(sampling=types.SamplingCapability())):
            return self._refuse("sampling")
        answer: types.CreateMessageResult | types.ErrorData = await self._ask(
            types.CreateMessageRequest(params=params), types.CreateMessageResult)
        return answer

    async def elicitation(self, context: ClientRequestContext,
                          params: types.ElicitRequestParams) -> types.ElicitResult | types.ErrorData:
        """``elicitation/create`` from the upstream, asked of the calling client."""
        if not self._accepts(types.ClientCapabilities(elicitation=types.ElicitationCapability())):
            return self._refuse("elicitation")
        answer: types.ElicitResult | types.ErrorData = await self._ask(
            types.ElicitRequest(params=params), types.ElicitResult)
        return answer

    # -- upstream -> caller notifications ----------------------------------------------------
    def _budget(self) -> bool:
        if self._ctx is None or self.relayed >= self._limits.max_notifications:
            self.dropped += 1
            return False
        self.relayed += 1
        return True

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        """``notifications/message`` from the upstream, on the caller's request stream (at or above the
        level the caller set with ``logging/setLevel``)."""
        passes = CALL_LOG_FILTER.get()
        if self._ctx is not None and passes is not None and not passes(self._ctx, params.level):
            return
        if not self._budget():
            return
        ctx = self._ctx
        assert ctx is not None
        try:
            await ctx.session.send_log_message(params.level, params.data, params.logger,
                                               related_request_id=ctx.request_id)
        except Exception:  # a notification the caller cannot take is dropped, never the call's failure
            self.dropped += 1

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        """``notifications/progress`` for the upstream call, under the caller's own progress token."""
        if not self._wants_progress or not self._budget():
            return
        ctx = self._ctx
        assert ctx is not None
        try:
            # Sent on the caller's request stream under the caller's token (the SDK keeps it).
            await ctx.session.report_progress(progress, total, message)
        except Exception:
            self.dropped += 1
