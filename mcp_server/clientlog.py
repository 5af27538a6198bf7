"""Logging to MCP clients: ``logging/setLevel`` per session, ``notifications/message`` at or above it.

:class:`ClientLog` is the one place that decides whether a log entry reaches a client.
Link's own messages about a call go through :meth:`ClientLog.emit`, and so should anything
relayed on a caller's behalf (e.g. a federated upstream's ``notifications/message``):

    await client_log.emit(ctx, "warning", {"tool": name, "status": 502}, logger="stoa-link")

The level is kept per connection (one Streamable HTTP session, one legacy SSE stream) and
forgotten with it. Until a client sets a level it gets ``info`` and above. On 2026-07-28 there is
no ``logging/setLevel``; the SDK delivers only what a request opted into through its ``_meta``.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPDeprecationWarning

__all__ = ["LEVELS", "ClientLog"]

# RFC 5424 severities, least severe first (the order logging/setLevel filters by).
LEVELS: tuple[types.LoggingLevel, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert",
                                          "emergency")
_RANK: dict[str, int] = {level: rank for rank, level in enumerate(LEVELS)}


def _connection(ctx: ServerRequestContext[Any, Any]) -> Any:
    # The SDK exposes the per-connection object only privately on the per-request session.
    return getattr(ctx.session, "_connection", None)


class ClientLog:
    """Per-session log levels and the gate every client-bound log entry passes."""

    def __init__(self, default: types.LoggingLevel = "info") -> None:
        self.default = default
        self._levels: weakref.WeakKeyDictionary[Any, types.LoggingLevel] = weakref.WeakKeyDictionary()

    def set_level(self, ctx: ServerRequestContext[Any, Any], level: types.LoggingLevel) -> None:
        """Remember the level the client of ``ctx`` asked for (``logging/setLevel``)."""
        connection = _connection(ctx)
        if connection is not None:
            self._levels[connection] = level

    def level_of(self, ctx: ServerRequestContext[Any, Any]) -> types.LoggingLevel:
        connection = _connection(ctx)
        return self._levels.get(connection, self.default) if connection is not None else self.default

    def enabled(self, ctx: ServerRequestContext[Any, Any], level: str) -> bool:
        """Whether an entry at ``level`` would reach the client of ``ctx``."""
        rank = _RANK.get(level)
        return rank is not None and rank >= _RANK[self.level_of(ctx)]

    async def emit(self, ctx: ServerRequestContext[Any, Any], level: types.LoggingLevel, data: Any,
                   logger: str | None = "stoa-link") -> bool:
        """Send ``notifications/message`` on the request's stream if ``level`` passes; True if sent."""
        if not self.enabled(ctx, level):
            return False
        with warnings.catch_warnings():
            # Deprecated only as of 2026-07-28; handshake-era clients still use it.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await ctx.session.send_log_message(level, data, logger, related_request_id=ctx.request_id)
        return True

    async def handle_set_level(
        self, ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        """The ``logging/setLevel`` handler: answers ``{}``."""
        self.set_level(ctx, params.level)
        return types.EmptyResult()
