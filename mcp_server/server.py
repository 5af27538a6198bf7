"""The MCP protocol face, assembled on the official SDK's low-level ``Server``.

The low-level server serves each tool's JSON Schema exactly as the resource
wrote it. Handlers only translate between MCP messages and the
:class:`~mcp_server.gateway.ToolGateway`; the caller was authenticated by the
HTTP layer before the message reached the SDK (see :mod:`mcp_server.http`).
"""

from __future__ import annotations

import contextvars
import warnings
from collections.abc import Callable
from typing import Any

import mcp_types as types
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.caching import CacheHint
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from link import __version__
from link.registry import ToolSet
from mcp_server.catalog import CatalogEntry, InvalidArguments, shape_for_version
from mcp_server.clientlog import ClientLog
from mcp_server.content import ContentGateway
from mcp_server.content_notify import ContentNotifier
from mcp_server.content_server import content_handlers
from mcp_server.gateway import Caller, ToolGateway, UnknownTool
from mcp_server.listing import FAST_VERSIONS, SievedTools
from mcp_server.listing import install as install_fast_listing
from mcp_server.notify import ListChangedNotifier
from mcp_server.relay import CALL_CONTEXT, CALL_LOG_FILTER

__all__ = ["CALLER_SCOPE_KEY", "CURRENT_CALLER", "build_server", "caller_of"]

CALLER_SCOPE_KEY = "stoa.caller"

_INSTRUCTIONS = (
    "Tools of the STOA platform. Each call is authenticated, authorised by policy, rate limited and "
    "metered by the gateway; an upstream failure comes back as a tool error carrying the HTTP status."
)


# The caller of the HTTP request being handled, for SDK hooks that get no request context.
CURRENT_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("stoa_mcp_caller", default=None)


def caller_of(ctx: ServerRequestContext[Any, Any]) -> Caller:
    """The caller the HTTP layer authenticated for this message."""
    request = ctx.request
    scope = getattr(request, "scope", None)
    caller = scope.get(CALLER_SCOPE_KEY) if isinstance(scope, dict) else None
    if not isinstance(caller, Caller):
        # Only reachable if a transport bypassed the HTTP layer: refuse rather than guess.
        raise MCPError(types.INVALID_REQUEST, "unauthenticated transport")
    return caller


class _TrackConnections:
    """Server middleware: remember handshake-era connections for list_changed notifications."""

    def __init__(self, notifier: ListChangedNotifier | ContentNotifier) -> None:
        self._notifier = notifier

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            # The SDK exposes the connection only privately on the per-request session.
            self._notifier.track(getattr(ctx.session, "_connection", None))
        return await call_next(ctx)


class _GatewayServer(Server[Any]):
    """The SDK server, advertising ``tools.listChanged`` on every transport.

    The Streamable HTTP session manager builds the handshake options itself,
    without NotificationOptions, so the default is changed here.
    """

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        # resources/prompts list_changed are sent only when those handlers are installed (see build_server).
        served = self.get_request_handler
        return super().create_initialization_options(
            notification_options or NotificationOptions(
                tools_changed=True, resources_changed=served("resources/list") is not None,
                prompts_changed=served("prompts/list") is not None),
            experimental_capabilities,
            extensions,
        )


# Given a request, which catalog entries it may see and call (None: all the caller's).
EntryScope = Callable[[Any], Callable[[CatalogEntry], bool] | None]


def _private_lists(with_content: bool) -> tuple[Any, ...]:
    """The list methods whose answers depend on the caller (tenant, policy)."""
    return ("tools/list", "resources/list", "resources/templates/list", "prompts/list", "resources/read") \
        if with_content \
        else ("tools/list",)


def build_server(
    gateway: ToolGateway, notifier: ListChangedNotifier, *, trace: bool = True,
    content: tuple[ContentGateway, ContentNotifier] | None = None,
    entry_scope: EntryScope | None = None,
    content_scope: Callable[[Any], ToolSet | None] | None = None,
    client_log: ClientLog | None = None,
) -> Server[Any]:
    """The low-level MCP server: tools/list, tools/call and subscriptions/listen (and, with ``content``,
    resources, prompts and completion).

    ``entry_scope`` narrows the tools a request sees, ``content_scope`` its resources and prompts to
    one ToolSet's (a virtual server, see :mod:`mcp_server.virtual`).
    """

    log = client_log or ClientLog()

    def content_of(ctx: ServerRequestContext[Any, Any]) -> ContentGateway:
        assert content is not None
        return content[0].scoped(content_scope(ctx.request) if content_scope is not None else None)

    def scoped(ctx: ServerRequestContext[Any, Any]) -> Callable[[CatalogEntry], bool] | None:
        return entry_scope(ctx.request) if entry_scope is not None else None

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> dict[str, Any]:
        entries = await gateway.list_entries(caller_of(ctx))
        keep = scoped(ctx)
        if keep is not None:
            entries = [e for e in entries if keep(e)]
        version = ctx.protocol_version
        tools: list[dict[str, Any]]
        if version in FAST_VERSIONS:
            # Each description was shaped for this version once; see mcp_server.listing.
            shape_for_version(entries, version)
            tools = SievedTools(version, [e.for_version(version) for e in entries])
        else:
            tools = [e.wire for e in entries]
        result: dict[str, Any] = {"tools": tools}
        if version in MODERN_PROTOCOL_VERSIONS:
            result["resultType"] = "complete"
        return result

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> dict[str, Any]:
        caller = caller_of(ctx)
        keep = scoped(ctx)
        if keep is not None:
            entry = gateway.find(caller.principal, params.name)
            if entry is None or not keep(entry):
                raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        # A federated call relays its upstream's requests and notifications into this request.
        relay_token = CALL_CONTEXT.set(ctx)
        filter_token = CALL_LOG_FILTER.set(log.enabled)
        try:
            result = await gateway.call(caller, params.name, params.arguments)
        except UnknownTool:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}") from None
        except InvalidArguments as exc:
            raise MCPError(types.INVALID_PARAMS, f"Invalid arguments for tool {params.name}: {exc}",
                           data={"field": exc.field, "reason": exc.reason}) from None
        finally:
            CALL_CONTEXT.reset(relay_token)
            CALL_LOG_FILTER.reset(filter_token)
        if result.is_error:
            await log.emit(ctx, "warning", {"tool": params.name, "status": result.status,
                                            "reason": result.reason or "tool error"})
        else:
            await log.emit(ctx, "debug", {"tool": params.name, "status": result.status})
        wire = result.as_mcp()
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            wire["resultType"] = "complete"
        return wire

    def input_schema(name: str) -> dict[str, Any] | None:
        # Lets the SDK check 2026-07-28 Mcp-Param headers without listing every tool per call.
        caller = CURRENT_CALLER.get()
        entry = gateway.find(caller.principal, name) if caller is not None else None
        schema = entry.wire["inputSchema"] if entry is not None else None
        return schema if isinstance(schema, dict) else None

    with warnings.catch_warnings():
        # logging/setLevel is deprecated only as of 2026-07-28; the handshake eras still use it.
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        server: Server[Any] = _GatewayServer(
            "stoa-link",
            version=__version__,
            title="STOA Link MCP server",
            instructions=_INSTRUCTIONS,
            get_tool_input_schema=input_schema,
            on_list_tools=list_tools,  # type: ignore[arg-type]
            on_call_tool=call_tool,  # type: ignore[arg-type]
            on_subscriptions_listen=ListenHandler(notifier.bus),
            on_set_logging_level=log.handle_set_level,
            # A caller's list depends on its tenant and on policy: never shared, re-fetched freely.
            cache_hints={m: CacheHint(ttl_ms=0, scope="private") for m in _private_lists(content is not None)},
            **(content_handlers(content_of, content[1], caller_of) if content is not None else {}),
        )
    if not trace:
        # The SDK opens a span per message; without tracing that is pure cost on every call.
        server.middleware = [m for m in server.middleware if not isinstance(m, OpenTelemetryMiddleware)]
    server.middleware.append(_TrackConnections(notifier))
    if content is not None:
        server.middleware.append(_TrackConnections(content[1]))
    install_fast_listing()
    return server
