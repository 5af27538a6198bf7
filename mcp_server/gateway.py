"""The tool gateway: what ``tools/list`` and ``tools/call`` mean, whatever the transport.

Every call goes through Link's own decision pipeline (identity, policy, rate
limit, contract) as a :class:`link.model.Request` for ``/mcp/tools/{name}``,
so MCP traffic is governed and metered exactly like data-plane traffic.
After the upstream answers, one :class:`link.events.RequestOutcome` is offered
to the app's outcome bus.

Tenancy: an authenticated caller sees and calls its own tenant's tools; an
anonymous one sees the public tenants' (``mcp.public_tenants``).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from link import jsonsafe
from link.jsonsafe import DEFAULT_MAX_DEPTH
from link.model import CredentialKind, Decision, Outcome, Principal, Request, RequestContext, RouteMatch
from link.outcomes import request_outcome, unknown_entry_outcome
from link.registry import Tool, ToolRegistry
from link.telemetry.propagation import trace_id_of
from mcp_server.catalog import CatalogEntry, InvalidArguments, ToolCatalog
from mcp_server.metrics import TOOL_CALL_SECONDS, TOOL_CALLS, TOOL_LISTS
from mcp_server.upstream import ArgumentError, HttpToolInvoker, UpstreamError, UpstreamResponse

if TYPE_CHECKING:
    from link.app import LinkApp

__all__ = ["Caller", "FederatedCaller", "ToolGateway", "ToolResult", "UnknownTool"]

_LIST_CACHE_MAX = 1024


class UnknownTool(Exception):
    """No tool of that name is visible to the caller."""


class FederatedCaller(Protocol):
    """Forwards a call to a federated tool's upstream MCP server (see :mod:`mcp_server.federation`)."""

    async def call(self, tool: Tool, arguments: Mapping[str, Any]) -> ToolResult: ...


@dataclass(slots=True)
class Caller:
    """Who is calling, as the transport saw the HTTP request."""

    principal: Principal
    headers: dict[str, str]  # lower-cased names
    transport: str = "streamable-http"  # streamable-http | sse | rest
    host: str = ""
    scheme: str = "http"
    source_address: str = ""
    source_port: int = 0


@dataclass(slots=True)
class ToolResult:
    """A finished call in MCP terms, plus what REST and metering need."""

    content: list[dict[str, Any]]
    is_error: bool = False
    structured: dict[str, Any] | None = None
    status: int = 200  # the upstream's status, or the refusal's
    refusal: Decision | None = None
    backend_s: float = 0.0
    response_bytes: int = 0
    reason: str = ""  # machine code of a failure for metering: timeout, upstream_status, invalid_params …

    def as_mcp(self) -> dict[str, Any]:
        out: dict[str, Any] = {"content": self.content, "isError": self.is_error}
        if self.structured is not None:
            out["structuredContent"] = self.structured
        return out


def _is_json(content_type: str) -> bool:
    ct = content_type.split(";", 1)[0].strip().lower()
    return ct == "application/json" or ct.endswith("+json")


def result_from_upstream(tool: Tool, resp: UpstreamResponse, max_depth: int = DEFAULT_MAX_DEPTH) -> ToolResult:
    """Map an HTTP answer to MCP content: JSON as text plus structuredContent; 4xx/5xx -> isError.

    The answer is untrusted: JSON the bounded loader refuses (too deep, duplicate keys, NaN …) is
    passed on as text only, never as structured content.
    """
    is_error = resp.status >= 400
    ct = resp.content_type.split(";", 1)[0].strip().lower()
    content: list[dict[str, Any]]
    structured: dict[str, Any] | None = None
    text = ""
    if ct.startswith("image/") or ct.startswith("audio/"):
        kind = "image" if ct.startswith("image/") else "audio"
        content = [{"type": kind, "data": base64.b64encode(resp.body).decode(), "mimeType": ct}]
    else:
        text = resp.body.decode("utf-8", "replace")
        parsed: Any = None
        if _is_json(resp.content_type) and resp.body:
            try:
                parsed = jsonsafe.loads(resp.body, max_depth=max_depth, max_bytes=len(resp.body),
                                        reject_duplicate_keys=True)
            except jsonsafe.JsonRefused:
                parsed = None
        if is_error:
            structured = {"status": resp.status, "error": parsed if parsed is not None else text}
            text = f"HTTP {resp.status}: {text}" if text else f"HTTP {resp.status}"
        elif parsed is not None:
            # structuredContent is an object; other JSON values are wrapped.
            structured = parsed if isinstance(parsed, dict) else {"result": parsed}
        content = [{"type": "text", "text": text}]
    if is_error and not text:
        content.insert(0, {"type": "text", "text": f"HTTP {resp.status}"})
    return ToolResult(
        content=content, is_error=is_error, structured=structured, status=resp.status,
        backend_s=resp.elapsed_s, response_bytes=len(resp.body), reason="upstream_status" if is_error else "",
    )


def error_result(message: str, status: int, reason: str) -> ToolResult:
    return ToolResult(
        content=[{"type": "text", "text": message}], is_error=True,
        structured={"status": status, "error": reason, "message": message}, status=status, reason=reason,
    )


def _trace_id(headers: Mapping[str, str]) -> str:
    return trace_id_of(headers.get("traceparent", ""))


def _principal_key(p: Principal) -> tuple[Any, ...]:
    return (p.kind, p.tenant, p.consumer, p.subject, p.scopes, p.roles)


class ToolGateway:
    """Lists and calls tools for a caller through the Link pipeline."""

    def __init__(
        self,
        app: LinkApp,
        registry: ToolRegistry,
        invoker: HttpToolInvoker,
        *,
        catalog: ToolCatalog | None = None,
        federation: FederatedCaller | None = None,
    ) -> None:
        self._app = app
        self._settings = app.settings.mcp
        self._registry = registry
        self._catalog = catalog or ToolCatalog(registry)
        self._invoker = invoker
        self.federation = federation
        self._public = tuple(self._settings.public_tenants)
        self._scopes = tuple(self._settings.required_scopes)
        self._list_cache: OrderedDict[tuple[Any, ...], tuple[float, list[CatalogEntry]]] = OrderedDict()

    @property
    def catalog(self) -> ToolCatalog:
        return self._catalog

    # -- tenancy ----------------------------------------------------------------
    def tenants_for(self, principal: Principal) -> tuple[str, ...]:
        """The tenants whose tools a caller sees."""
        if principal.kind is CredentialKind.ANONYMOUS:
            return self._public
        return (principal.tenant,) if principal.tenant else ()

    def is_public(self, tenant: str) -> bool:
        return tenant in self._public

    def find(self, principal: Principal, name: str) -> CatalogEntry | None:
        for tenant in self.tenants_for(principal):
            entry = self._catalog.find(tenant, name)
            if entry is not None:
                return entry
        return None

    def public_tool_exists(self, name: str) -> bool:
        return any(self._catalog.find(t, name) is not None for t in self._public)

    # -- tools/list ---------------------------------------------------------------
    async def list_tools(self, caller: Caller) -> list[dict[str, Any]]:
        """The caller's tools in MCP wire form, filtered by policy."""
        return [e.wire for e in await self.list_entries(caller)]

    async def list_entries(self, caller: Caller) -> list[CatalogEntry]:
        """The caller's tools, filtered by policy (reused for ``mcp.list_cache_ttl_s``)."""
        tenants = self.tenants_for(caller.principal)
        if len(tenants) == 1:
            entries = self._catalog.tenant_entries(tenants[0])
        else:
            entries = [e for tenant in tenants for e in self._catalog.tenant_entries(tenant)]
        pipeline = self._app.pipeline
        if not pipeline.authorizes or not entries:
            TOOL_LISTS.labels("none").inc()
            return entries
        key = (_principal_key(caller.principal), self._registry.version)
        now = time.monotonic()
        hit = self._list_cache.get(key)
        if hit is not None and hit[0] > now:
            TOOL_LISTS.labels("hit").inc()
            return hit[1]
        TOOL_LISTS.labels("miss").inc()
        visible = [e for e in entries
                   if await pipeline.permits(self._context(caller, e.tool, None, action="list"), caller.principal)]
        if self._settings.list_cache_ttl_s > 0:
            self._list_cache[key] = (now + self._settings.list_cache_ttl_s, visible)
            while len(self._list_cache) > _LIST_CACHE_MAX:
                self._list_cache.popitem(last=False)
        return visible

    # -- tools/call ---------------------------------------------------------------
    def _request(
        self, caller: Caller, tool: Tool | None, name: str, arguments: Mapping[str, Any] | None,
        action: str = "call",
    ) -> Request:
        return Request(
            method="POST",
            path=f"/mcp/tools/{name}",
            headers=caller.headers,
            host=caller.host,
            scheme=caller.scheme,
            request_id=caller.headers.get("x-request-id") or uuid.uuid4().hex,
            source_address=caller.source_address,
            source_port=caller.source_port,
            tool_name=name,
            tool_tenant=tool.tenant if tool is not None else None,
            arguments=dict(arguments) if arguments is not None else None,
            # Policies see these as input.attributes.contextExtensions (list evaluations: action "list").
            context={"entry": "mcp", "mcp_action": action},
        )

    def _route(self, tool: Tool) -> RouteMatch:
        return RouteMatch(
            name=tool.name,
            tenant=tool.tenant,
            api=tool.name,
            template=f"/mcp/tools/{tool.name}",
            anonymous=self.is_public(tool.tenant),
            required_scopes=self._scopes,
            rate_limit=tool.rate_limit,
        )

    def _context(
        self, caller: Caller, tool: Tool, arguments: Mapping[str, Any] | None, action: str
    ) -> RequestContext:
        request = self._request(caller, tool, tool.name, arguments, action)
        ctx = RequestContext(request=request, route=self._route(tool))
        ctx.record.entry = "mcp"
        ctx.record.mcp_action = action
        ctx.record.mcp_transport = caller.transport
        return ctx

    async def call(self, caller: Caller, name: str, arguments: Mapping[str, Any] | None) -> ToolResult:
        """Run one tool call; raises UnknownTool or InvalidArguments (both metered)."""
        started = time.time()
        t0 = time.perf_counter()
        args: dict[str, Any] = dict(arguments or {})
        entry = self.find(caller.principal, name)
        if entry is None:
            self._meter_unknown(caller, name, args, started, t0)
            raise UnknownTool(name)
        tool = entry.tool
        ctx = self._context(caller, tool, args, action="call")
        route = ctx.route or self._route(tool)
        # The HTTP layer authenticated the caller; the pipeline admits it under the tool's route.
        run = await self._app.pipeline.run_with_principal(ctx.request, caller.principal, route, ctx)
        decision = run.decision
        if not decision.allowed:
            result = error_result(decision.message or decision.reason or "refused", decision.http_status,
                                  decision.reason or decision.outcome.value)
            result.refusal = decision
            self._meter(caller, ctx, decision, result, decision.outcome, args, started, t0)
            return result
        principal = ctx.principal if ctx.principal.kind is not CredentialKind.ANONYMOUS else caller.principal
        if not self.is_public(tool.tenant) and principal.tenant != tool.tenant:
            # Defence in depth: lookup already scopes by tenant; the pipeline's principal must agree.
            refusal = Decision.deny(403, Outcome.POLICY_DENIED, "cross_tenant",
                                    "the tool belongs to another tenant")
            result = error_result(refusal.message, 403, refusal.reason)
            result.refusal = refusal
            self._meter(caller, ctx, decision, result, Outcome.POLICY_DENIED, args, started, t0)
            return result
        try:
            entry.validate(args)
        except InvalidArguments:
            self._meter(caller, ctx, decision, error_result("invalid arguments", 400, "invalid_params"),
                        Outcome.INVALID, args, started, t0)
            raise
        result = await self._forward(caller, tool, args, decision, principal)
        outcome = Outcome.ERROR if result.is_error else Outcome.SUCCESS
        self._meter(caller, ctx, decision, result, outcome, args, started, t0)
        return result

    async def _forward(
        self, caller: Caller, tool: Tool, args: dict[str, Any], decision: Decision, principal: Principal
    ) -> ToolResult:
        if tool.federated:
            if self.federation is None:
                return error_result("federation is not running", 503, "toolset_unavailable")
            return await self.federation.call(tool, args)
        headers = dict(decision.upstream_headers)
        for name in ("traceparent", "tracestate"):
            if name in caller.headers:
                headers.setdefault(name, caller.headers[name])
        try:
            resp = await self._invoker.invoke(tool, args, principal, headers)
        except ArgumentError as exc:
            return error_result(f"invalid arguments: {exc}", 400, "invalid_params")
        except UpstreamError as exc:
            return error_result(str(exc), exc.status, exc.kind)
        return result_from_upstream(tool, resp, self._settings.max_json_depth)

    # -- metering -----------------------------------------------------------------
    def _meter(
        self, caller: Caller, ctx: RequestContext, decision: Decision, result: ToolResult, outcome: Outcome,
        args: Mapping[str, Any], started: float, t0: float,
    ) -> None:
        total_s = time.perf_counter() - t0
        reason = decision.reason if not decision.allowed else result.reason
        route = ctx.route
        event = request_outcome(
            decision.record,
            request_id=ctx.request.request_id,
            timestamp=started,
            method="POST",
            path=ctx.request.path,
            http_status=result.status,
            outcome=outcome,
            source="mcp",
            # The decision's span when Link traces (it continues the caller's trace), else the caller's trace.
            trace_id=_trace_id(caller.headers),
            reason=reason,
            tenant=decision.record.tenant or (route.tenant or "" if route else ""),
            tool=ctx.request.tool_name or "",
            latency_ms=total_s * 1000.0,
            t_gateway_ms=max(0.0, total_s - result.backend_s) * 1000.0,
            t_backend_ms=result.backend_s * 1000.0,
            t_link_ms=sum(ctx.timings_ns.values()) / 1e6,
            request_size_bytes=_request_size(caller, args),
            response_size_bytes=result.response_bytes,
        )
        self._app.bus.offer(event)
        tool = ctx.route.name if ctx.route is not None else ""
        _count(caller.transport, outcome, event.tenant, tool, total_s)

    def _meter_unknown(
        self, caller: Caller, name: str, args: Mapping[str, Any], started: float, t0: float
    ) -> None:
        p = caller.principal
        total_s = time.perf_counter() - t0
        request = self._request(caller, None, name, args)
        self._app.bus.offer(unknown_entry_outcome(
            p, request_id=request.request_id, timestamp=started, path=request.path, reason="unknown_tool",
            name=name, latency_ms=total_s * 1000.0, request_size_bytes=_request_size(caller, args),
            trace_id=_trace_id(caller.headers),
        ))
        # The name is the caller's, not the registry's: never a label value.
        _count(caller.transport, Outcome.NOT_FOUND, p.tenant, "", None)


_CHILDREN: dict[tuple[str, Outcome, str, str], tuple[Any, Any]] = {}


def _count(transport: str, outcome: Outcome, tenant: str, tool: str, seconds: float | None) -> None:
    """Count a call (label lookups are cached: they cost more than the increment)."""
    key = (transport, outcome, tenant, tool)
    children = _CHILDREN.get(key)
    if children is None:
        children = _CHILDREN[key] = (
            TOOL_CALLS.labels(transport, outcome.value, tenant, tool),
            TOOL_CALL_SECONDS.labels(outcome.value, tenant, tool))
    children[0].inc()
    if seconds is not None:
        children[1].observe(seconds)


def _request_size(caller: Caller, args: Mapping[str, Any]) -> int:
    """Bytes the client sent for the call (its HTTP body), else the size of the arguments as JSON."""
    declared = caller.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else _size(args)


def _size(args: Mapping[str, Any]) -> int:
    try:
        return len(json.dumps(args, separators=(",", ":"), default=str))
    except (TypeError, ValueError):
        return 0
