"""The policy input document, shaped like OPA-Envoy's so its policies run unchanged.

``input.attributes`` follows the form OPA-Envoy gives Envoy's v3 ``CheckRequest``
(JSON field names, numbers as numbers, ``request.time`` as ``{seconds, nanos}``:
``attributes.request.http.{id, method, path, host, headers, scheme, protocol,
size, body}``, ``attributes.source.address.socketAddress.address`` …);
``parsed_path``, ``parsed_query``, ``parsed_body`` and ``truncated_body`` are
computed the way OPA-Envoy computes them (:mod:`link.policy.bodies`), and
``source_principal`` is there when the peer has one. ``input.stoa`` adds what
Link knows: the verified principal, the matched route or tool, the contract.

:func:`parse_request` does the parsing that can fail, once per request, before
the policy runs; only the top-level parts a policy reads are then built (see
:mod:`link.policy.refs`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from link.model import Request, RequestContext
from link.policy.bodies import InputError, parse_body, parse_path, parse_query
from link.policy.refs import FULL, prune

__all__ = ["ContractLookup", "InputError", "ParsedRequest", "build_input", "parse_request"]

ContractLookup = Callable[[RequestContext], Mapping[str, Any] | None]

_VERSION = {"ext_authz": "v3", "encoding": "protojson"}
_TRACE_KEYS = frozenset({"traceparent", "tracestate"})


@dataclass(slots=True)
class ParsedRequest:
    """``parsed_path``, ``parsed_query``, ``parsed_body`` and ``truncated_body`` of one request."""

    path: list[str]
    query: dict[str, list[str]]
    body: Any
    truncated: bool


def parse_request(request: Request) -> ParsedRequest:
    """Parse what OPA-Envoy parses; raises :class:`InputError` where it cannot build the input."""
    body, truncated = parse_body(request)
    return ParsedRequest(parse_path(request.path), parse_query(request.query), body, truncated)


def _timestamp(epoch: float) -> dict[str, int]:
    seconds, micros = divmod(round(epoch * 1e6), 1_000_000)  # Envoy's clock has microseconds
    return {"seconds": seconds, "nanos": micros * 1000}


def _address(address: str, port: int) -> dict[str, Any]:
    return {"address": {"socketAddress": {"address": address, "portValue": port}}}


def _attributes(ctx: RequestContext) -> dict[str, Any]:
    req = ctx.request
    http: dict[str, Any] = {
        "id": req.stream_id or req.request_id,
        "method": req.method,
        "headers": req.headers,
        "path": f"{req.path}?{req.query}" if req.query else req.path,
        "host": req.host,
        "scheme": req.scheme,
        "protocol": req.protocol,
    }
    declared = req.headers.get("content-length", "")
    if declared.isdigit():
        http["size"] = int(declared)  # Envoy reports the declared size, also when it forwards less
    elif req.body is not None:
        http["size"] = len(req.body)
    if req.body:
        http["body"] = req.body.decode("utf-8", errors="replace")
    source = _address(req.source_address, req.source_port)
    if req.peer is not None:
        source["principal"] = req.peer.principal
        if req.peer.certificate_pem:
            source["certificate"] = req.peer.certificate_pem
    attrs: dict[str, Any] = {
        "source": source,
        "destination": _address(req.destination_address, req.destination_port),
        "request": {
            # A protobuf Timestamp as OPA-Envoy maps messages: its fields, not an RFC 3339 string.
            "time": {"seconds": req.envoy_time[0], "nanos": req.envoy_time[1]} if req.envoy_time
            else _timestamp(req.received_at),
            "http": http,
        },
        "metadataContext": {},
        "routeMetadataContext": {},
    }
    if req.context:
        # Only Envoy's context extensions: the trace context Link copies into ``context`` is not one.
        extensions = {k: v for k, v in req.context.items() if k not in _TRACE_KEYS}
        if extensions:
            attrs["contextExtensions"] = extensions
    return attrs


def _stoa(ctx: RequestContext, contract: ContractLookup | None, needs: Any) -> dict[str, Any]:
    p = ctx.principal
    route = ctx.route
    req = ctx.request
    out: dict[str, Any] = {
        "principal": {
            "kind": p.kind.value,
            "subject": p.subject,
            "consumer": p.consumer,
            "tenant": p.tenant,
            "scopes": sorted(p.scopes),
            "roles": sorted(p.roles),
            "issuer": p.issuer,
            "claims": p.claims,
        },
        "route": None,
        "tool": None,
        "contract": None,
    }
    if route is not None:
        out["route"] = {
            "name": route.name,
            "tenant": route.tenant,
            "api": route.api,
            "template": route.template,
            "path_params": route.path_params,
        }
    if req.tool_name:
        out["tool"] = {"name": req.tool_name, "tenant": req.tool_tenant, "arguments": req.arguments}
    out.update(_mcp_entry(ctx))
    if contract is not None and (needs is None or needs is FULL or "contract" in needs):
        found = contract(ctx)
        out["contract"] = dict(found) if found is not None else None
    return out


def _mcp_entry(ctx: RequestContext) -> dict[str, Any]:
    """``resource`` / ``prompt`` for an MCP resource read or prompt get (see mcp_server.content)."""
    req = ctx.request
    kind = req.context.get("mcp_entry_kind")
    if kind not in ("resource", "prompt"):
        return {}
    tenant = ctx.route.tenant if ctx.route is not None else None
    entry: dict[str, Any] = {"name": req.context.get("mcp_entry_name", ""), "tenant": tenant}
    if kind == "resource":
        entry["uri"] = req.context.get("mcp_resource_uri", "")
        entry["variables"] = req.arguments or {}
    else:
        entry["arguments"] = req.arguments or {}
    return {kind: entry}


def build_input(
    ctx: RequestContext,
    needs: Mapping[str, Any] | None = None,
    contract: ContractLookup | None = None,
    parsed: ParsedRequest | None = None,
) -> dict[str, Any]:
    """The input document, reduced to ``needs`` (``None`` = everything).

    ``parsed`` is the request's :func:`parse_request` (computed here when not given;
    raises :class:`InputError` then).
    """
    req = ctx.request
    wanted = None if needs is None else needs.keys()

    def want(key: str) -> bool:
        return wanted is None or key in wanted

    doc: dict[str, Any] = {}
    if want("attributes"):
        doc["attributes"] = _attributes(ctx)
    if parsed is None and (want("parsed_path") or want("parsed_query") or want("parsed_body")
                           or want("truncated_body")):
        parsed = parse_request(req)
    if parsed is not None:
        if want("parsed_path"):
            doc["parsed_path"] = parsed.path
        if want("parsed_query"):
            doc["parsed_query"] = parsed.query
        if want("parsed_body") or want("truncated_body"):
            doc["parsed_body"], doc["truncated_body"] = parsed.body, parsed.truncated
    if want("source_principal") and req.peer is not None and req.peer.principal:
        doc["source_principal"] = req.peer.principal
    if want("version"):
        doc["version"] = _VERSION
    if want("stoa"):
        doc["stoa"] = _stoa(ctx, contract, None if needs is None else needs.get("stoa"))
    if needs is None or needs is FULL:
        return doc
    return prune(doc, needs)  # type: ignore[no-any-return]
