"""MCP resources, prompts and completions of registry entries, under the tools' governance.

``resources/read`` and ``prompts/get`` go through Link's decision pipeline as a
:class:`link.model.Request` for ``/mcp/resources/{name}`` or
``/mcp/prompts/{name}`` (identity, policy, rate limit), and each one offers one
:class:`link.events.RequestOutcome` (``tool`` = the entry's name) to the outcome
bus, like a tool call. Policies see the entry at ``input.stoa.resource``
(name, uri, tenant) or ``input.stoa.prompt`` (name, tenant, arguments); lists
are filtered by policy with action ``list``.

Tenancy is the tools': a caller sees its tenant's entries, an anonymous caller
the public tenants' (see :meth:`mcp_server.gateway.ToolGateway.tenants_for`).
Failures are JSON-RPC errors carrying ``data.status`` and ``data.reason``.
"""

from __future__ import annotations

import base64
import copy
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import mcp_types as types
from mcp.shared.exceptions import MCPError

from link.model import CredentialKind, Decision, Outcome, Principal, Request, RequestContext, RouteMatch
from link.outcomes import request_outcome, unknown_entry_outcome
from link.registry import Prompt, Resource, ToolRegistry, ToolSet
from link.registry.content import render
from link.registry.model import thaw
from link.telemetry.propagation import trace_id_of
from mcp_server.content_notify import toolset_key, toolset_of
from mcp_server.gateway import Caller, ToolGateway
from mcp_server.upstream import ArgumentError, HttpToolInvoker, UpstreamError

if TYPE_CHECKING:
    from link.app import LinkApp

__all__ = ["RESOURCE_NOT_FOUND", "ContentGateway"]

# The MCP specification's code for an unknown resource URI.
RESOURCE_NOT_FOUND = -32002
MAX_ARGUMENT_CHARS = 16 * 1024
MAX_COMPLETION_VALUES = 100
_TEXT_TYPES = ("application/json", "application/xml", "application/yaml", "application/javascript")


def _decodable(value: str) -> bool:
    try:
        unquote(value, errors="strict")
    except UnicodeDecodeError:
        return False
    return True


def _is_text(mime: str) -> bool:
    mt = mime.split(";", 1)[0].strip().lower()
    return mt.startswith("text/") or mt in _TEXT_TYPES or mt.endswith("+json") or mt.endswith("+xml")


@dataclass(frozen=True, slots=True)
class FederatedEntry:
    """A resource or prompt of a federated upstream (a ToolSet's server), as the pipeline sees it."""

    name: str
    tenant: str
    uri: str = ""
    rate_limit: str | None = None


class ContentGateway:
    """Lists, reads and completes a caller's Resource and Prompt entries through the Link pipeline.

    Entries come from the registry (``kind: Resource``/``Prompt``) and from federated upstreams
    (a ToolSet's server, under its prefix); both go through the same identity, policy, limits and
    metering.
    """

    def __init__(self, app: LinkApp, registry: ToolRegistry, invoker: HttpToolInvoker, tools: ToolGateway) -> None:
        self._app = app
        self._registry = registry
        self._invoker = invoker
        self._tools = tools
        self._scopes = tuple(app.settings.mcp.required_scopes)
        self._served: ToolSet | None = None  # a virtual server's set: only its content is seen

    def scoped(self, served: ToolSet | None) -> ContentGateway:
        """This gateway narrowed to one ToolSet's content (a virtual server); itself for None.

        The set's federated resources, templates and prompts (its ``spec.resources``/``spec.prompts``
        selection) and the registry entries its ``spec.include`` names, all in the set's tenant. The
        caller must belong to that tenant; :class:`mcp_server.virtual.VirtualServerEndpoint` checked it.
        """
        if served is None:
            return self
        view = copy.copy(self)
        view._served = served
        return view

    @property
    def _federation(self) -> Any:
        return self._app.extras.get("federation")

    @property
    def _toolset(self) -> str | None:
        return self._served.name if self._served is not None else None

    def _tenants(self, principal: Principal) -> tuple[str, ...]:
        return (self._served.tenant,) if self._served is not None else self._tools.tenants_for(principal)

    def _federated(self, principal: Principal, kind: str) -> list[tuple[FederatedEntry, dict[str, Any]]]:
        """The caller's federated resources, templates or prompts, each with its wire description."""
        fed = self._federation
        if fed is None:
            return []
        out: list[tuple[FederatedEntry, dict[str, Any]]] = []
        for tenant in self._tenants(principal):
            listing = {"resource": fed.resources, "template": fed.resource_templates, "prompt": fed.prompts}[kind]
            for item in listing(tenant, self._toolset):
                uri = str(item.get("uri") or item.get("uriTemplate") or "")
                out.append((FederatedEntry(name=str(item.get("name", "")), tenant=tenant, uri=uri), item))
        return out

    # -- lookups ------------------------------------------------------------------------
    def resources_of(self, principal: Principal) -> list[Resource]:
        if self._served is not None:
            included = self._served.include.resources
            return [r for r in self._registry.resources(self._served.tenant) if r.name in included]
        return [r for t in self._tools.tenants_for(principal) for r in self._registry.resources(t)]

    def prompts_of(self, principal: Principal) -> list[Prompt]:
        if self._served is not None:
            included = self._served.include.prompts
            return [p for p in self._registry.prompts(self._served.tenant) if p.name in included]
        return [p for t in self._tools.tenants_for(principal) for p in self._registry.prompts(t)]

    def find_resource(self, principal: Principal, uri: str) -> tuple[Resource, dict[str, str]] | None:
        """The entry serving ``uri`` (a fixed URI wins over a template) and the variables it binds."""
        entries = self.resources_of(principal)
        for r in entries:
            if not r.is_template and r.uri == uri:
                return r, {}
        for r in entries:
            bound = r.match(uri) if r.is_template else None
            if bound is None or not all(_decodable(v) for v in bound.values()):
                continue
            # Variables travel percent-encoded in the URI; the upstream call encodes them again (safe="").
            values = {k: unquote(v, errors="strict") for k, v in bound.items()}
            if all(v not in (".", "..") and v.isprintable() for v in values.values()):
                return r, values
        return None

    def find_prompt(self, principal: Principal, name: str) -> Prompt | None:
        if self._served is not None:
            return next((p for p in self.prompts_of(principal) if p.name == name), None)
        for tenant in self._tools.tenants_for(principal):
            found = self._registry.prompt(tenant, name)
            if found is not None:
                return found
        return None

    # -- pipeline -----------------------------------------------------------------------
    def _context(self, caller: Caller, kind: str, entry: Resource | Prompt | FederatedEntry, action: str, *,
                 uri: str = "", arguments: Mapping[str, Any] | None = None) -> RequestContext:
        path = f"/mcp/{kind}s/{entry.name}"
        context = {"entry": "mcp", "mcp_action": action, "mcp_entry_kind": kind, "mcp_entry_name": entry.name}
        if uri:
            context["mcp_resource_uri"] = uri
        request = Request(
            method="POST", path=path, headers=caller.headers, host=caller.host, scheme=caller.scheme,
            request_id=caller.headers.get("x-request-id") or uuid.uuid4().hex,
            source_address=caller.source_address, source_port=caller.source_port,
            arguments=dict(arguments) if arguments is not None else None, context=context,
        )
        route = RouteMatch(name=entry.name, tenant=entry.tenant, api=entry.name, template=path,
                           anonymous=self._tools.is_public(entry.tenant), required_scopes=self._scopes,
                           rate_limit=entry.rate_limit)
        ctx = RequestContext(request=request, route=route)
        ctx.record.entry, ctx.record.mcp_action, ctx.record.mcp_transport = "mcp", action, caller.transport
        return ctx

    async def _visible(self, caller: Caller, kind: str, entries: list[Any]) -> list[Any]:
        pipeline = self._app.pipeline
        if not pipeline.authorizes or not entries:
            return entries
        out = []
        for entry in entries:
            uri = entry.uri if isinstance(entry, Resource | FederatedEntry) else ""
            if await pipeline.permits(self._context(caller, kind, entry, "list", uri=uri), caller.principal):
                out.append(entry)
        return out

    async def _admit(self, caller: Caller, ctx: RequestContext,
                     entry: Resource | Prompt | FederatedEntry) -> tuple[Decision, Principal]:
        """Run the pipeline; raise the refusal as a JSON-RPC error (metered)."""
        assert ctx.route is not None  # _context always gives the entry's route
        # The HTTP layer authenticated the caller; the pipeline admits it under the entry's route.
        run = await self._app.pipeline.run_with_principal(ctx.request, caller.principal, ctx.route, ctx)
        decision = run.decision
        if not decision.allowed:
            self._meter(caller, ctx, decision, decision.http_status, decision.outcome, 0.0, 0)
            raise MCPError(types.INVALID_REQUEST, decision.message or decision.reason or "refused",
                           data={"status": decision.http_status, "reason": decision.reason or decision.outcome.value})
        principal = ctx.principal if ctx.principal.kind is not CredentialKind.ANONYMOUS else caller.principal
        if not self._tools.is_public(entry.tenant) and principal.tenant != entry.tenant:
            # Defence in depth: lookup already scopes by tenant; the pipeline's principal must agree.
            self._meter(caller, ctx, decision, 403, Outcome.POLICY_DENIED, 0.0, 0, reason="cross_tenant")
            raise MCPError(types.INVALID_REQUEST, "the entry belongs to another tenant",
                           data={"status": 403, "reason": "cross_tenant"})
        return decision, principal

    # -- resources ----------------------------------------------------------------------
    async def list_resources(self, caller: Caller) -> list[dict[str, Any]]:
        fixed = [r for r in self.resources_of(caller.principal) if not r.is_template]
        local = [_describe_resource(r) for r in await self._visible(caller, "resource", fixed)]
        return local + await self._visible_federated(caller, "resource", "resource", {d["uri"] for d in local})

    async def list_templates(self, caller: Caller) -> list[dict[str, Any]]:
        templates = [r for r in self.resources_of(caller.principal) if r.is_template]
        local = [_describe_template(r) for r in await self._visible(caller, "resource", templates)]
        return local + await self._visible_federated(caller, "template", "resource",
                                                     {d["uriTemplate"] for d in local})

    async def _visible_federated(self, caller: Caller, kind: str, policy_kind: str,
                                 taken: set[str]) -> list[dict[str, Any]]:
        """Federated entries the policy lets the caller see; a local entry of the same URI/name wins."""
        found = [(e, d) for e, d in self._federated(caller.principal, kind) if (e.uri or e.name) not in taken]
        visible = {id(e) for e in await self._visible(caller, policy_kind, [e for e, _ in found])}
        return [d for e, d in found if id(e) in visible]

    def _federated_candidates(self, caller: Caller, uri: str) -> list[tuple[str, FederatedEntry]]:
        """Per tenant whose sets federate resources for the caller: the entry ``uri`` names there, or
        (a URI of a template) one made for it."""
        offered = self._federated(caller.principal, "resource") + self._federated(caller.principal, "template")
        out = []
        for tenant in dict.fromkeys(e.tenant for e, _ in offered):
            entry = next((e for e, _ in offered if e.tenant == tenant and e.uri == uri), None)
            out.append((tenant, entry or FederatedEntry(name=uri, tenant=tenant, uri=uri)))
        return out

    async def _read_federated(self, caller: Caller, uri: str, started: float, t0: float) -> dict[str, Any] | None:
        """``resources/read`` of a federated resource, under the pipeline; None when no set serves ``uri``."""
        fed = self._federation
        if fed is None:
            return None
        for tenant, entry in self._federated_candidates(caller, uri):
            ctx = self._context(caller, "resource", entry, "read", uri=uri)
            decision, _ = await self._admit(caller, ctx, entry)  # a refusal is metered and raised here
            try:
                result = await fed.read_resource(tenant, uri, self._toolset)
            except MCPError:
                self._meter(caller, ctx, decision, 502, Outcome.ERROR, 0.0, 0, reason="upstream_error", t0=t0)
                raise
            if result is not None:
                self._meter(caller, ctx, decision, 200, Outcome.SUCCESS, 0.0, 0, t0=t0)
                return dict(result)
        return None

    async def read(self, caller: Caller, uri: str) -> dict[str, Any]:
        """``resources/read``: the contents, or a JSON-RPC error (unknown URI, refusal, upstream failure)."""
        started, t0 = time.time(), time.perf_counter()
        found = self.find_resource(caller.principal, uri)
        if found is None:
            federated = await self._read_federated(caller, uri, started, t0)
            if federated is not None:
                return federated
            self._meter_unknown(caller, "resource", uri, started, t0)
            raise MCPError(RESOURCE_NOT_FOUND, "Resource not found", data={"uri": uri})
        resource, variables = found
        ctx = self._context(caller, "resource", resource, "read", uri=uri, arguments=variables)
        decision, principal = await self._admit(caller, ctx, resource)
        if resource.text is not None:
            content = _content(uri, resource.mime_type or "text/plain", text=render(resource.text, variables))
            self._meter(caller, ctx, decision, 200, Outcome.SUCCESS, 0.0, len(content.get("text", "")), t0=t0)
            return {"contents": [content]}
        if resource.blob is not None:
            content = _content(uri, resource.mime_type or "application/octet-stream", blob=resource.blob)
            self._meter(caller, ctx, decision, 200, Outcome.SUCCESS, 0.0, len(resource.blob), t0=t0)
            return {"contents": [content]}
        headers = dict(decision.upstream_headers)
        for name in ("traceparent", "tracestate"):
            if name in caller.headers:
                headers.setdefault(name, caller.headers[name])
        try:
            resp = await self._invoker.invoke(resource.as_tool(), variables, principal, headers)
        except ArgumentError as exc:
            self._meter(caller, ctx, decision, 400, Outcome.INVALID, 0.0, 0, reason="invalid_params", t0=t0)
            raise MCPError(types.INVALID_PARAMS, f"invalid URI variables: {exc}",
                           data={"status": 400, "reason": "invalid_params"}) from None
        except UpstreamError as exc:
            self._meter(caller, ctx, decision, exc.status, Outcome.ERROR, 0.0, 0, reason=exc.kind, t0=t0)
            raise MCPError(types.INTERNAL_ERROR, f"the resource could not be read: {exc}",
                           data={"status": exc.status, "reason": exc.kind}) from None
        if resp.status >= 400:
            self._meter(caller, ctx, decision, resp.status, Outcome.ERROR, resp.elapsed_s, len(resp.body),
                        reason="upstream_status", t0=t0)
            raise MCPError(types.INTERNAL_ERROR, f"the resource's upstream answered HTTP {resp.status}",
                           data={"status": resp.status, "reason": "upstream_status"})
        mime = resource.mime_type or resp.content_type.split(";", 1)[0].strip() or "application/octet-stream"
        if _is_text(mime):
            content = _content(uri, mime, text=resp.body.decode("utf-8", "replace"))
        else:
            content = _content(uri, mime, blob=resp.body)
        self._meter(caller, ctx, decision, 200, Outcome.SUCCESS, resp.elapsed_s, len(resp.body), t0=t0)
        return {"contents": [content]}

    async def subscription_key(self, caller: Caller, uri: str) -> tuple[str, str] | None:
        """What a subscription to ``uri`` watches, if the caller may see it: a Resource entry's key, or
        the ToolSet serving ``uri`` (:func:`toolset_key`; Link then subscribes upstream, once per URI)."""
        found = self.find_resource(caller.principal, uri)
        if found is not None:
            return found[0].key
        fed = self._federation
        if fed is None:
            return None
        for tenant, entry in self._federated_candidates(caller, uri):
            if not await self._visible(caller, "resource", [entry]):
                continue
            toolset = await fed.watch_resource(tenant, uri, self._toolset)
            if toolset is not None:
                return toolset_key(tenant, toolset)
        return None

    async def release(self, key: tuple[str, str], uri: str) -> None:
        """No client watches ``uri`` of ``key`` any more: a ToolSet's upstream subscription is dropped."""
        fed, toolset = self._federation, toolset_of(key)
        if fed is not None and toolset is not None:
            await fed.unwatch_resource(key[0], toolset, uri)

    # -- prompts ------------------------------------------------------------------------
    async def list_prompts(self, caller: Caller) -> list[dict[str, Any]]:
        local = [_describe_prompt(p) for p in await self._visible(caller, "prompt", self.prompts_of(caller.principal))]
        return local + await self._visible_federated(caller, "prompt", "prompt", {d["name"] for d in local})

    async def get_prompt(self, caller: Caller, name: str, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        """``prompts/get``: the rendered messages; a missing required argument is INVALID_PARAMS with a reason."""
        started, t0 = time.time(), time.perf_counter()
        prompt = self.find_prompt(caller.principal, name)
        if prompt is None:
            federated = await self._get_federated_prompt(caller, name, arguments, t0)
            if federated is not None:
                return federated
            self._meter_unknown(caller, "prompt", name, started, t0)
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {name}", data={"reason": "unknown_prompt"})
        args = dict(arguments or {})
        ctx = self._context(caller, "prompt", prompt, "get", arguments=args)
        problem = _argument_problem(prompt, args)
        decision, _ = await self._admit(caller, ctx, prompt)
        if problem is not None:
            field, reason = problem
            self._meter(caller, ctx, decision, 400, Outcome.INVALID, 0.0, 0, reason="invalid_params", t0=t0)
            raise MCPError(types.INVALID_PARAMS, f"Invalid arguments for prompt {name}: {field}: {reason}",
                           data={"field": field, "reason": reason})
        messages = render(prompt.messages, {k: str(v) for k, v in args.items()})
        result: dict[str, Any] = {"messages": messages}
        if prompt.description:
            result["description"] = prompt.description
        self._meter(caller, ctx, decision, 200, Outcome.SUCCESS, 0.0, 0, t0=t0)
        return result

    async def _get_federated_prompt(self, caller: Caller, name: str, arguments: Mapping[str, Any] | None,
                                    t0: float) -> dict[str, Any] | None:
        fed = self._federation
        if fed is None:
            return None
        for entry, _ in self._federated(caller.principal, "prompt"):
            if entry.name != name:
                continue
            args = {str(k): str(v) for k, v in (arguments or {}).items()}
            ctx = self._context(caller, "prompt", entry, "get", arguments=args)
            decision, _ = await self._admit(caller, ctx, entry)
            try:
                result = await fed.get_prompt(entry.tenant, name, args, self._toolset)
            except MCPError:
                self._meter(caller, ctx, decision, 502, Outcome.ERROR, 0.0, 0, reason="upstream_error", t0=t0)
                raise
            if result is not None:
                self._meter(caller, ctx, decision, 200, Outcome.SUCCESS, 0.0, 0, t0=t0)
                return dict(result)
        return None

    # -- completion ---------------------------------------------------------------------
    async def complete(self, caller: Caller, ref: Mapping[str, Any], argument: str, value: str) -> dict[str, Any]:
        """``completion/complete`` for a prompt argument or a resource template variable (prefix match)."""
        candidates: tuple[str, ...]
        if ref.get("type") == "ref/prompt":
            prompt = self.find_prompt(caller.principal, str(ref.get("name", "")))
            if prompt is None:
                federated = await self._complete_federated(caller, "prompt", str(ref.get("name", "")), ref,
                                                           argument, value)
                if federated is not None:
                    return federated
            if prompt is None or not await self._visible(caller, "prompt", [prompt]):
                raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {ref.get('name')}")
            arg = prompt.argument(argument)
            if arg is None:
                raise MCPError(types.INVALID_PARAMS, f"prompt {prompt.name} has no argument {argument!r}")
            candidates = arg.completions
        elif ref.get("type") == "ref/resource":
            uri = str(ref.get("uri", ""))
            mine = self.resources_of(caller.principal)
            found = next((r for r in mine if r.uri_template == uri or r.uri == uri), None)
            if found is None:
                federated = await self._complete_federated(caller, "resource", uri, ref, argument, value)
                if federated is not None:
                    return federated
            if found is None or not await self._visible(caller, "resource", [found]):
                raise MCPError(RESOURCE_NOT_FOUND, "Resource not found", data={"uri": uri})
            if found.is_template and argument not in found.variables:
                raise MCPError(types.INVALID_PARAMS, f"the template has no variable {argument!r}")
            candidates = found.completions.get(argument, ())
        else:
            raise MCPError(types.INVALID_PARAMS, "ref.type must be ref/prompt or ref/resource")
        matches = [c for c in candidates if c.startswith(value)]
        return {"completion": {"values": matches[:MAX_COMPLETION_VALUES], "total": len(matches),
                               "hasMore": len(matches) > MAX_COMPLETION_VALUES}}

    async def _complete_federated(self, caller: Caller, kind: str, key: str, ref: Mapping[str, Any], argument: str,
                                  value: str) -> dict[str, Any] | None:
        """Completion from the upstream of a federated prompt or resource (template) the caller may see."""
        fed = self._federation
        if fed is None:
            return None
        offered = self._federated(caller.principal, "prompt") if kind == "prompt" else \
            self._federated(caller.principal, "template") + self._federated(caller.principal, "resource")
        for entry, _ in offered:
            if (entry.uri or entry.name) != key or not await self._visible(caller, kind, [entry]):
                continue
            result = await fed.complete(entry.tenant, ref, argument, value, self._toolset)
            if result is None:
                continue
            # The upstream's answer is untrusted: strings only, at most the spec's 100 values.
            completion = result.get("completion") if isinstance(result.get("completion"), dict) else {}
            raw = completion.get("values")
            values = [v for v in raw if isinstance(v, str)] if isinstance(raw, list) else []
            total = completion.get("total")
            return {"completion": {
                "values": values[:MAX_COMPLETION_VALUES],
                "total": total if isinstance(total, int) and not isinstance(total, bool) else len(values),
                "hasMore": bool(completion.get("hasMore")) or len(values) > MAX_COMPLETION_VALUES}}
        return None

    # -- metering -----------------------------------------------------------------------
    def _meter(self, caller: Caller, ctx: RequestContext, decision: Decision, status: int, outcome: Outcome,
               backend_s: float, response_bytes: int, *, reason: str = "", t0: float | None = None) -> None:
        total_s = time.perf_counter() - t0 if t0 is not None else sum(ctx.timings_ns.values()) / 1e9
        route = ctx.route
        record = decision.record
        self._app.bus.offer(request_outcome(
            record, request_id=ctx.request.request_id, timestamp=time.time() - total_s, method="POST",
            path=ctx.request.path, http_status=status, outcome=outcome, source="mcp",
            trace_id=trace_id_of(caller.headers.get("traceparent", "")),
            reason=decision.reason if not decision.allowed else reason,
            tenant=record.tenant or (route.tenant or "" if route else ""),
            route_template=record.route_template or ctx.request.path,
            tool=route.name if route is not None else "",
            latency_ms=total_s * 1000.0, t_gateway_ms=max(0.0, total_s - backend_s) * 1000.0,
            t_backend_ms=backend_s * 1000.0, t_link_ms=sum(ctx.timings_ns.values()) / 1e6,
            request_size_bytes=_declared(caller), response_size_bytes=response_bytes,
        ))

    def _meter_unknown(self, caller: Caller, kind: str, name: str, started: float, t0: float) -> None:
        p = caller.principal
        total_s = time.perf_counter() - t0
        self._app.bus.offer(unknown_entry_outcome(
            p, request_id=caller.headers.get("x-request-id") or uuid.uuid4().hex, timestamp=started,
            path=f"/mcp/{kind}s", reason=f"unknown_{kind}", name=name, latency_ms=total_s * 1000.0,
            request_size_bytes=_declared(caller), trace_id=trace_id_of(caller.headers.get("traceparent", "")),
        ))


def _declared(caller: Caller) -> int:
    declared = caller.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else 0


def _argument_problem(prompt: Prompt, args: Mapping[str, Any]) -> tuple[str, str] | None:
    """(field, reason) of the first bad argument, or None."""
    for arg in prompt.arguments:
        if arg.required and (arg.name not in args or args[arg.name] in (None, "")):
            return arg.name, "required"
    for key, value in args.items():
        if prompt.argument(key) is None:
            return key, "not an argument of the prompt"
        if not isinstance(value, str):
            return key, "expected a string"
        if len(value) > MAX_ARGUMENT_CHARS:
            return key, f"longer than {MAX_ARGUMENT_CHARS} characters"
    return None


def _content(uri: str, mime: str, *, text: str | None = None, blob: bytes | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"uri": uri, "mimeType": mime}
    if text is not None:
        out["text"] = text
    else:
        out["blob"] = base64.b64encode(blob or b"").decode()
    return out


def _common(entry: Resource | Prompt) -> dict[str, Any]:
    out: dict[str, Any] = {"name": entry.name}
    if entry.title:
        out["title"] = entry.title
    if entry.description:
        out["description"] = entry.description
    return out


def _describe_resource(r: Resource) -> dict[str, Any]:
    out = {"uri": r.uri, **_common(r)}
    if r.mime_type:
        out["mimeType"] = r.mime_type
    if r.size is not None:
        out["size"] = r.size
    if r.annotations:
        out["annotations"] = thaw(r.annotations)
    return out


def _describe_template(r: Resource) -> dict[str, Any]:
    out = {"uriTemplate": r.uri_template, **_common(r)}
    if r.mime_type:
        out["mimeType"] = r.mime_type
    if r.annotations:
        out["annotations"] = thaw(r.annotations)
    return out


def _describe_prompt(p: Prompt) -> dict[str, Any]:
    out = _common(p)
    if p.arguments:
        out["arguments"] = [
            {"name": a.name, **({"description": a.description} if a.description else {}), "required": a.required}
            for a in p.arguments
        ]
    return out
