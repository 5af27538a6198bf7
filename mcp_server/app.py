"""The MCP server's ASGI application.

Routes (all behind the Host/Origin guard; everything under ``/mcp`` behind the
caller authentication of :mod:`mcp_server.http`):

- ``/mcp``: Streamable HTTP (protocol 2025-06-18, 2025-11-25 and 2026-07-28)
- ``GET /mcp/sse`` + ``POST /mcp/messages/``: the legacy HTTP+SSE transport
- ``GET /mcp/v1/tools``, ``POST /mcp/v1/tools/{name}``: REST
- ``/.well-known/oauth-protected-resource``: OAuth resource metadata (RFC 9728)
- ``/healthz``, ``/readyz``: probes for edge-mcp deployments
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
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from link.registry import registry_of
from link.settings import McpSettings
from mcp_server.auth import CallerAuthenticator, metadata_routes
from mcp_server.federation import ToolSetFederation
from mcp_server.gateway import ToolGateway
from mcp_server.http import CallerMiddleware
from mcp_server.notify import ListChangedNotifier
from mcp_server.rest import rest_routes
from mcp_server.secrets import SecretStore
from mcp_server.security import HostOriginGuard, host_check_needed
from mcp_server.server import build_server
from mcp_server.upstream import HttpToolInvoker

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


def build_parts(link_app: LinkApp) -> McpParts:
    settings = link_app.settings.mcp
    registry = registry_of(link_app)
    secrets = SecretStore(settings.secrets_dir)
    invoker = HttpToolInvoker(
        secrets, max_connections=settings.upstream_max_connections,
        max_response_bytes=settings.upstream_max_response_bytes,
    )
    federation = ToolSetFederation(
        registry, secrets, backoff_initial_s=settings.federation_backoff_initial_s,
        backoff_max_s=settings.federation_backoff_max_s, ping_interval_s=settings.federation_ping_interval_s,
    )
    # The process serving MCP is the one whose federation state counts (e.g. for ToolSet status writes).
    link_app.extras["federation"] = federation
    gateway = ToolGateway(link_app, registry, invoker, federation=federation)
    notifier = ListChangedNotifier(registry, InMemorySubscriptionBus())
    server = build_server(gateway, notifier, trace=link_app.settings.tracing.enabled)
    sessions = StreamableHTTPSessionManager(
        app=server,
        json_response=settings.json_response,
        security_settings=None,  # Host/Origin are checked once, for every route, by HostOriginGuard
        max_request_body_size=settings.max_body_bytes,
        session_idle_timeout=settings.session_idle_timeout_s,
        max_sessions=settings.max_sessions,
    )
    return McpParts(gateway=gateway, server=server, notifier=notifier, federation=federation,
                    invoker=invoker, auth=CallerAuthenticator(link_app), sessions=sessions)


def build_asgi(link_app: LinkApp, parts: McpParts | None = None) -> Starlette:
    """The MCP server for ``link_app`` (which the caller starts and stops)."""
    parts = parts or build_parts(link_app)
    settings = link_app.settings.mcp
    sse = SseServerTransport(SSE_MESSAGES_PATH, security_settings=None,
                             max_request_body_size=settings.max_body_bytes)
    server = parts.server

    async def sse_connect(request: Request) -> Response:
        async with sse.connect_sse(request.scope, request.receive, request._send) as (read, write):
            await server.run(read, write, server.create_initialization_options())
        return Response()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok, details = link_app.readiness()
        return JSONResponse({"ready": ok, "details": details}, status_code=200 if ok else 503)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await parts.notifier.start()
        await parts.federation.start()
        try:
            async with parts.sessions.run():
                yield
        finally:
            await parts.federation.stop()
            await parts.notifier.stop()
            await parts.invoker.aclose()

    routes: list[Route | Mount] = [
        Route("/mcp", StreamableHTTPASGIApp(parts.sessions), methods=["GET", "POST", "DELETE"]),
        Route("/mcp/sse", sse_connect, methods=["GET"]),
        Mount(SSE_MESSAGES_PATH, app=sse.handle_post_message),
        *rest_routes(parts.gateway, parts.auth),
        *metadata_routes(parts.auth),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    middleware = [
        Middleware(HostOriginGuard, allowed_hosts=settings.allowed_hosts,
                   allowed_origins=settings.allowed_origins, enabled=settings.dns_rebinding_protection,
                   check_hosts=host_check_needed(settings.host, settings.allowed_hosts,
                                                 McpSettings().allowed_hosts)),
        Middleware(CallerMiddleware, auth=parts.auth, gateway=parts.gateway,
                   max_body_bytes=settings.max_body_bytes),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.mcp = parts
    return app
