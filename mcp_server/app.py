"""The MCP server's ASGI application.

Routes (all behind the Host/Origin guard; everything under ``/mcp`` behind the
caller authentication of :mod:`mcp_server.http`):

- ``/mcp``: Streamable HTTP (protocol 2025-06-18, 2025-11-25 and 2026-07-28)
- ``GET /mcp/sse`` + ``POST /mcp/messages/``: the legacy HTTP+SSE transport
- ``GET /mcp/v1/tools``, ``POST /mcp/v1/tools/{name}``: REST
- ``/.well-known/oauth-protected-resource``: OAuth resource metadata (RFC 9728)
- ``/healthz``, ``/readyz``: probes for edge-mcp deployments
- ``/metrics``: Prometheus (the process's one registry, as on the admin port)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp.server.lowlevel.server import Server
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.subscriptions import InMemorySubscriptionBus
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from link.metrics import REGISTRY
from link.registry import registry_of
from link.settings import McpSettings
from mcp_server.auth import CallerAuthenticator, metadata_routes
from mcp_server.bodies import BoundedBody
from mcp_server.clientlog import ClientLog
from mcp_server.content import ContentGateway
from mcp_server.content_notify import ContentNotifier, toolset_key
from mcp_server.direct import DirectToolCalls
from mcp_server.events import SessionEventStores
from mcp_server.exchange import token_exchanger
from mcp_server.federation import ToolSetFederation
from mcp_server.gateway import ToolGateway
from mcp_server.http import CallerMiddleware
from mcp_server.notify import ListChangedNotifier
from mcp_server.rest import rest_routes
from mcp_server.resume import PollLongCalls, ResumableSessionManager
from mcp_server.secrets import SecretStore
from mcp_server.security import HostOriginGuard, host_check_needed
from mcp_server.server import build_server
from mcp_server.upstream import HttpToolInvoker
from mcp_server.virtual import (
    VIRTUAL_PATH,
    VirtualServerEndpoint,
    served_toolset,
    virtual_scope,
    virtual_sessions,
)

if TYPE_CHECKING:
    from link.app import LinkApp

__all__ = ["McpParts", "build_asgi", "build_parts"]

SSE_MESSAGES_PATH = "/mcp/messages/"


@dataclass(slots=True)
class McpParts:
    """Everything the MCP server is made of (handy for tests and the benchmark)."""

    gateway: ToolGateway
    server: Server[Any]
    notifier: ListChangedNotifier
    federation: ToolSetFederation
    invoker: HttpToolInvoker
    auth: CallerAuthenticator
    sessions: StreamableHTTPSessionManager
    virtual_sessions: StreamableHTTPSessionManager | None = None  # /mcp/v/{name}
    content: ContentGateway | None = None
    content_notifier: ContentNotifier | None = None
    # Per-session logging/setLevel and notifications/message (relays emit through it too).
    client_log: ClientLog | None = None
    direct: DirectToolCalls | None = None  # set by build_asgi


def build_parts(link_app: LinkApp) -> McpParts:
    settings = link_app.settings.mcp
    registry = registry_of(link_app)
    secrets = SecretStore(settings.secrets_dir)
    invoker = HttpToolInvoker(
        secrets, max_connections=settings.upstream_max_connections,
        max_response_bytes=settings.upstream_max_response_bytes,
        exchanger=token_exchanger(link_app.settings, secrets),
    )
    federation = ToolSetFederation(
        registry, secrets, backoff_initial_s=settings.federation_backoff_initial_s,
        backoff_max_s=settings.federation_backoff_max_s, ping_interval_s=settings.federation_ping_interval_s,
        max_json_depth=settings.max_json_depth,
    )
    # The process serving MCP is the one whose federation state counts (e.g. for ToolSet status writes).
    link_app.extras["federation"] = federation
    gateway = ToolGateway(link_app, registry, invoker, federation=federation)
    notifier = ListChangedNotifier(registry, InMemorySubscriptionBus())
    # Resources and prompts share the tools' subscription bus (one listen stream carries every event).
    content = ContentGateway(link_app, registry, invoker, gateway)
    content_notifier = ContentNotifier(registry, notifier.bus)
    federation.on_resource_updated = content_notifier.federated_updated
    federation.is_watched = lambda tenant, toolset, uri: content_notifier.watched(uri, toolset_key(tenant, toolset))
    client_log = ClientLog()
    server = build_server(gateway, notifier, trace=link_app.settings.tracing.enabled,
                          content=(content, content_notifier), client_log=client_log)
    session_options: dict[str, Any] = {
        "app": server,
        "json_response": settings.json_response,
        "security_settings": None,  # Host/Origin are checked once, for every route, by HostOriginGuard
        "max_request_body_size": settings.max_body_bytes,
        "session_idle_timeout": settings.session_idle_timeout_s,
        "max_sessions": settings.max_sessions,
    }
    sessions: StreamableHTTPSessionManager
    events: SessionEventStores | None = None
    if settings.event_store_per_session > 0:
        events = SessionEventStores(json_posts=settings.json_response, per_session=settings.event_store_per_session,
                                    total=settings.event_store_total, ttl_s=settings.event_store_ttl_s)
        sessions = ResumableSessionManager(events=events, retry_interval=settings.sse_retry_ms, **session_options)
    else:
        sessions = StreamableHTTPSessionManager(**session_options)
    # Virtual servers: the same gateway behind a server that narrows each request to one ToolSet,
    # resumable over the same event store.
    virtual_server = build_server(gateway, notifier, trace=link_app.settings.tracing.enabled,
                                  content=(content, content_notifier), entry_scope=virtual_scope,
                                  content_scope=served_toolset, client_log=client_log)
    if events is not None and settings.sse_poll_after_s > 0:
        for served in (server, virtual_server):
            served.middleware.append(PollLongCalls(settings.sse_poll_after_s))
    virtual = virtual_sessions(events, retry_interval=settings.sse_retry_ms,
                               **{**session_options, "app": virtual_server})
    return McpParts(gateway=gateway, server=server, notifier=notifier, federation=federation,
                    invoker=invoker, auth=CallerAuthenticator(link_app), sessions=sessions,
                    virtual_sessions=virtual, content=content, content_notifier=content_notifier,
                    client_log=client_log)


def build_asgi(link_app: LinkApp, parts: McpParts | None = None) -> Starlette:
    """The MCP server for ``link_app`` (which the caller starts and stops)."""
    parts = parts or build_parts(link_app)
    settings = link_app.settings.mcp
    sse = SseServerTransport(SSE_MESSAGES_PATH, security_settings=None,
                             max_request_body_size=settings.max_body_bytes)
    server = parts.server

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok, details = link_app.readiness()
        return JSONResponse({"ready": ok, "details": details}, status_code=200 if ok else 503)

    async def prometheus(request: Request) -> Response:
        # The process's one registry: the same families as the admin port's /metrics.
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await parts.notifier.start()
        if parts.content_notifier is not None:
            await parts.content_notifier.start()
        await parts.federation.start()
        try:
            async with parts.sessions.run(), _running(parts.virtual_sessions):
                yield
        finally:
            await parts.federation.stop()
            if parts.content_notifier is not None:
                await parts.content_notifier.stop()
            await parts.notifier.stop()
            await parts.invoker.aclose()

    # The SDK opens a span per message when tracing: those calls keep the SDK's path.
    direct = settings.direct_tool_calls and settings.json_response and not link_app.settings.tracing.enabled
    streamable = DirectToolCalls(StreamableHTTPASGIApp(parts.sessions), parts.gateway, parts.sessions, server,
                                 enabled=direct)
    parts.direct = streamable
    routes: list[Route | Mount] = [
        Route("/mcp", streamable, methods=["GET", "POST", "DELETE"]),
        Route("/mcp/sse", _SseConnect(sse, server), methods=["GET"]),
        *_virtual_routes(parts, registry_of(link_app)),
        Mount(SSE_MESSAGES_PATH, app=sse.handle_post_message),
        *rest_routes(parts.gateway, parts.auth),
        *metadata_routes(parts.auth),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]
    middleware = [
        Middleware(HostOriginGuard, allowed_hosts=settings.allowed_hosts,
                   allowed_origins=settings.allowed_origins, enabled=settings.dns_rebinding_protection,
                   check_hosts=host_check_needed(settings.host, settings.allowed_hosts,
                                                 McpSettings().allowed_hosts)),
        Middleware(BoundedBody, max_body_bytes=settings.max_body_bytes, body_timeout_s=settings.body_timeout_s,
                   max_depth=settings.max_json_depth),
        Middleware(CallerMiddleware, auth=parts.auth, gateway=parts.gateway),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.mcp = parts
    return app


class _SseConnect:
    """``GET /mcp/sse`` as a plain ASGI app: the SDK's SSE transport writes the response itself.

    (A Starlette ``Request`` endpoint would have to hand it the request's private ``_send``.)
    """

    def __init__(self, sse: SseServerTransport, server: Server[Any]) -> None:
        self._sse = sse
        self._server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self._sse.connect_sse(scope, receive, send) as (read, write):
            await self._server.run(read, write, self._server.create_initialization_options())


def _virtual_routes(parts: McpParts, registry: Any) -> list[Route]:
    if parts.virtual_sessions is None:
        return []
    endpoint = VirtualServerEndpoint(StreamableHTTPASGIApp(parts.virtual_sessions), registry, parts.gateway)
    return [Route(VIRTUAL_PATH, endpoint, methods=["GET", "POST", "DELETE"])]


@contextlib.asynccontextmanager
async def _running(sessions: StreamableHTTPSessionManager | None) -> AsyncIterator[None]:
    if sessions is None:
        yield
        return
    async with sessions.run():
        yield
