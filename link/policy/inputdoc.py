"""The policy input document, shaped like OPA-Envoy's so its policies run unchanged.

``input.attributes`` follows the protojson form of Envoy's v3 ``CheckRequest``
(``attributes.request.http.{method, path, host, headers, scheme, body}``,
``attributes.source.address.socketAddress.address`` …); ``parsed_path``,
``parsed_query``, ``parsed_body`` and ``truncated_body`` are computed the way
OPA-Envoy computes them. ``input.stoa`` adds what Link knows: the verified
principal, the matched route or tool, and the route's contract.

Only the top-level parts a policy reads are built (see :mod:`link.policy.refs`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from link.model import Request, RequestContext
from link.policy.refs import FULL, prune

__all__ = ["ContractLookup", "build_input", "parse_body", "parsed_path"]

ContractLookup = Callable[[RequestContext], Mapping[str, Any] | None]

_VERSION = {"ext_authz": "v3", "encoding": "protojson"}


def parsed_path(path: str) -> list[str]:
    """``/people/1`` -> ``["people", "1"]`` (segments percent-decoded, like OPA-Envoy)."""
    return [unquote(seg) for seg in path.lstrip("/").split("/")]


def parse_body(request: Request) -> tuple[Any, bool]:
    """``(parsed_body, truncated_body)``: the JSON body when the request has one and it is whole."""
    body = request.body
    if not body or "application/json" not in request.headers.get("content-type", ""):
        return None, False
    declared = request.headers.get("content-length", "")
    if request.body_truncated or (declared.isdigit() and int(declared) > len(body)):
        return None, True
    try:
        return json.loads(body), False
    except (ValueError, UnicodeDecodeError):
        return None, False  # the contract phase answers malformed bodies; the policy sees none


def _address(address: str, port: int) -> dict[str, Any]:
    return {"address": {"socketAddress": {"address": address, "portValue": port}}}


def _attributes(ctx: RequestContext) -> dict[str, Any]:
    req = ctx.request
    http: dict[str, Any] = {
        "id": req.request_id,
        "method": req.method,
        "headers": req.headers,
        "path": f"{req.path}?{req.query}" if req.query else req.path,
        "host": req.host,
        "scheme": req.scheme,
        "protocol": req.protocol,
    }
    if req.body is not None:
        http["body"] = req.body.decode("utf-8", errors="replace")
        http["size"] = len(req.body)
    source = _address(req.source_address, req.source_port)
    if req.peer is not None:
        source["principal"] = req.peer.principal
        if req.peer.certificate_pem:
            source["certificate"] = req.peer.certificate_pem
    attrs: dict[str, Any] = {
        "source": source,
        "destination": _address(req.destination_address, req.destination_port),
        "request": {
            "time": datetime.fromtimestamp(req.received_at, UTC).isoformat().replace("+00:00", "Z"),
            "http": http,
        },
        "metadataContext": {},
    }
    if req.context:
        attrs["contextExtensions"] = req.context
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
    if contract is not None and (needs is None or needs is FULL or "contract" in needs):
        found = contract(ctx)
        out["contract"] = dict(found) if found is not None else None
    return out


def build_input(
    ctx: RequestContext,
    needs: Mapping[str, Any] | None = None,
    contract: ContractLookup | None = None,
) -> dict[str, Any]:
    """The input document, reduced to ``needs`` (``None`` = everything)."""
    req = ctx.request
    wanted = None if needs is None else needs.keys()

    def want(key: str) -> bool:
        return wanted is None or key in wanted

    doc: dict[str, Any] = {}
    if want("attributes"):
        doc["attributes"] = _attributes(ctx)
    if want("parsed_path"):
        doc["parsed_path"] = parsed_path(req.path)
    if want("parsed_query"):
        doc["parsed_query"] = parse_qs(req.query, keep_blank_values=True) if req.query else {}
    if want("parsed_body") or want("truncated_body"):
        doc["parsed_body"], doc["truncated_body"] = parse_body(req)
    if want("version"):
        doc["version"] = _VERSION
    if want("stoa"):
        doc["stoa"] = _stoa(ctx, contract, None if needs is None else needs.get("stoa"))
    if needs is None or needs is FULL:
        return doc
    return prune(doc, needs)  # type: ignore[no-any-return]
