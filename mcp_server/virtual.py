"""Virtual servers: a ToolSet with ``spec.serve: true`` is also its own MCP endpoint, ``/mcp/v/{name}``.

A client connected there sees only that set's tools, resources, templates and prompts (the curated
``spec.tools``/``spec.resources``/``spec.prompts`` selections, renamed as on ``/mcp``), plus the
registry Tools, Resources and Prompts of the set's tenant that ``spec.include`` names, and can call,
read or get nothing else. It is the same MCP server behind the same HTTP layer:
the caller is authenticated by :mod:`mcp_server.http`, and every call goes through the gateway's
pipeline (policy, limits, metering) exactly as on ``/mcp``. The name is looked up in the caller's
own tenants, so two tenants' sets of the same name are two endpoints.

Sessions are resumable as on ``/mcp`` (:mod:`mcp_server.resume`, the same bounded event store), and
each session belongs to the virtual server that opened it: its id (and so its ``Last-Event-ID``
replays) answers 404 at any other ``/mcp/v/{name}``, as an unknown session would, besides the SDK's
own check that only the credential that opened a session may use it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import INVALID_REQUEST
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from link.registry import ToolRegistry, ToolSet
from mcp_server.catalog import CatalogEntry
from mcp_server.events import SessionEventStores
from mcp_server.gateway import Caller, ToolGateway
from mcp_server.resume import ResumableSessionManager
from mcp_server.server import CALLER_SCOPE_KEY

__all__ = ["VIRTUAL_PATH", "VirtualServerEndpoint", "served_toolset", "virtual_scope", "virtual_sessions"]

VIRTUAL_PATH = "/mcp/v/{name}"
_SCOPE_KEY = "stoa.virtual_server"  # (tenant, toolset) the request is served for
_SET_KEY = "stoa.virtual_toolset"  # that ToolSet, as the registry held it when the request came in
# The virtual server of the request being admitted (the SDK's _admit_session is not given the scope).
_ADMITTING: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("stoa_virtual_admitting",
                                                                                       default=None)


class VirtualServerEndpoint:
    """The ASGI endpoint of ``/mcp/v/{name}``: resolves the set, then hands over to Streamable HTTP."""

    def __init__(self, inner: ASGIApp, registry: ToolRegistry, gateway: ToolGateway) -> None:
        self._inner = inner
        self._registry = registry
        self._gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = str(scope.get("path_params", {}).get("name", ""))
        caller = scope.get(CALLER_SCOPE_KEY)
        served = self._served(caller, name) if isinstance(caller, Caller) else None
        if served is None:
            # The same answer whether the set is absent, another tenant's, or not served.
            await JSONResponse({"error": "not_found", "message": f"no MCP server {name!r} here"},
                               status_code=404)(scope, receive, send)
            return
        scope[_SCOPE_KEY] = served.key
        scope[_SET_KEY] = served
        await self._inner(scope, receive, send)

    def _served(self, caller: Caller, name: str) -> ToolSet | None:
        for tenant in self._gateway.tenants_for(caller.principal):
            toolset = self._registry.toolset(tenant, name)
            if toolset is not None and toolset.serve:
                return toolset
        return None


def served_toolset(request: Any) -> ToolSet | None:
    """The ToolSet a request to a virtual server is served for; None on ``/mcp``."""
    scope = getattr(request, "scope", None)
    served = scope.get(_SET_KEY) if isinstance(scope, dict) else None
    return served if isinstance(served, ToolSet) else None


def virtual_scope(request: Any) -> Callable[[CatalogEntry], bool] | None:
    """For a request to a virtual server: which catalog entries it may see and call; else None."""
    served = served_toolset(request)
    if served is None:
        return None
    tenant, name, included = served.tenant, served.name, served.include.tools

    def keep(entry: CatalogEntry) -> bool:
        tool = entry.tool
        if tool.tenant != tenant:
            return False
        return tool.toolset == name if tool.federated else tool.name in included

    return keep


class _BoundToServer(StreamableHTTPSessionManager):
    """Sessions that answer only at the virtual server that opened them (a mixin over either manager)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._served_by: dict[str, tuple[str, str] | None] = {}  # session id -> the server that opened it

    async def _handle_stateful_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        served = scope.get(_SCOPE_KEY)
        session = _header(scope, MCP_SESSION_ID_HEADER)
        if session is not None and session in self._server_instances \
                and self._served_by.get(session) != served:
            # Exactly what an unknown session gets: nothing says the id exists elsewhere.
            await JSONResponse({"jsonrpc": "2.0", "id": None,
                                "error": {"code": INVALID_REQUEST, "message": "Session not found"}},
                               status_code=404)(scope, receive, send)
            return
        token = _ADMITTING.set(served if isinstance(served, tuple) else None)
        try:
            await super()._handle_stateful_request(scope, receive, send)
        finally:
            _ADMITTING.reset(token)

    def _admit_session(self, requestor: Any) -> StreamableHTTPServerTransport | None:
        transport = super()._admit_session(requestor)
        if transport is not None and transport.mcp_session_id is not None:
            self._served_by[transport.mcp_session_id] = _ADMITTING.get()
        return transport

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        self._served_by.pop(session_id, None)
        await super()._discard_session(session_id, transport)


class _ResumableVirtualSessions(_BoundToServer, ResumableSessionManager):
    """Virtual servers' sessions, resumable with ``Last-Event-ID``."""


class _VirtualSessions(_BoundToServer, StreamableHTTPSessionManager):
    """Virtual servers' sessions without an event store (``mcp.event_store_per_session: 0``)."""


def virtual_sessions(events: SessionEventStores | None, *, retry_interval: int | None,
                     **options: Any) -> StreamableHTTPSessionManager:
    """The session manager of every ``/mcp/v/{name}``: resumable over ``events`` when there is a store.

    ``events`` is the main endpoint's store: one bound on memory for both, and event ids that are
    unique across them (a session only ever replays its own, see :mod:`mcp_server.events`).
    """
    if events is None:
        return _VirtualSessions(**options)
    return _ResumableVirtualSessions(events=events, retry_interval=retry_interval, **options)


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.lower().encode("latin-1")
    for key, value in scope.get("headers", ()):
        if key.lower() == wanted:
            return str(value.decode("latin-1"))
    return None
