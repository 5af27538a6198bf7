"""What the SDK's Streamable HTTP session manager knows about one session, read in one place.

:mod:`mcp_server.direct` answers plain ``tools/call`` POSTs of an open session itself, so it must
ask the same questions the SDK asks before it serves a session's request: does the session exist,
did this request's credential open it, is it still open. The SDK keeps that in private tables and
offers no public query; this module is the only reader of them (and of the transport's idle
countdown), so an SDK upgrade that moves them breaks one module and its test
(``tests/unit/mcp_server/test_mcp_direct.py``), and the direct path then declines every request
(the SDK answers as before).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

__all__ = ["open_session", "serving"]


def open_session(manager: StreamableHTTPSessionManager, session_id: str, user: Any) -> Any | None:
    """The transport of ``session_id`` if it is open and ``user`` (the ASGI scope's) opened it, else None.

    None means "let the SDK answer": it answers unknown, foreign and closed sessions itself.
    """
    instances = getattr(manager, "_server_instances", None)
    owners = getattr(manager, "_session_owners", None)
    if not isinstance(instances, dict) or not isinstance(owners, dict):
        return None
    transport = instances.get(session_id)
    if not isinstance(transport, StreamableHTTPServerTransport) or transport.is_terminated:
        return None
    requestor = authorization_context(user) if isinstance(user, AuthenticatedUser) else None
    if requestor != owners.get(session_id):
        return None
    idle = transport.idle_scope
    if idle is not None and idle.cancel_called:
        return None
    return transport


@contextlib.contextmanager
def serving(transport: Any) -> Iterator[None]:
    """Hold the session open while one of its requests is served, as the SDK's transport does.

    The idle countdown is suspended while any request is in flight and restarts when the last one
    ends, so a session used only through the direct path does not expire under its client.
    """
    idle = transport.idle_scope
    timeout = getattr(transport, "_idle_timeout", None)
    if idle is None or timeout is None:
        yield
        return
    transport._requests_in_flight += 1
    idle.deadline = math.inf
    try:
        yield
    finally:
        transport._requests_in_flight -= 1
        if not transport._requests_in_flight:
            idle.deadline = anyio.current_time() + timeout
