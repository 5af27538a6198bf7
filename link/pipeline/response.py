"""Response phase: turn what the phases gathered into the final decision.

Allowed: headers for the upstream (principal, request id), client-sent
``x-stoa-*`` headers removed so they cannot be spoofed, dynamic metadata for
Envoy's access log. Refused: a JSON body ``{"error", "reason", "request_id"}``.
"""

from __future__ import annotations

import json
import uuid

from link.model import Decision, RequestContext
from link.settings import IdentitySettings

_ERROR_TITLES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    413: "payload_too_large",
    422: "unprocessable_entity",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ResponsePhase:
    name = "response"

    def __init__(self, identity: IdentitySettings) -> None:
        self._h_tenant = identity.header_tenant
        self._h_consumer = identity.header_consumer
        self._h_subject = identity.header_subject
        self._strip_prefix = identity.strip_header_prefix.lower()

    def _common(self, ctx: RequestContext, decision: Decision) -> None:
        req = ctx.request
        if not ctx.decision_id:
            ctx.decision_id = uuid.uuid4().hex
        p = ctx.principal
        route = ctx.route
        meta = decision.metadata
        meta.update(ctx.metadata)
        # Envoy's access log already carries the request id and status; only what it cannot know goes here.
        meta["decision_id"] = ctx.decision_id
        meta["outcome"] = decision.outcome.value
        meta["reason"] = decision.reason
        meta["tenant"] = p.tenant or (route.tenant if route and route.tenant else "")
        meta["consumer"] = p.consumer
        meta["subject"] = p.subject
        meta["credential"] = p.kind.value
        if p.scopes:
            meta["scopes"] = " ".join(sorted(p.scopes))
        if p.roles:
            meta["roles"] = " ".join(sorted(p.roles))
        if route is not None:
            meta["route"] = route.name
            meta["api"] = route.api or route.name
            if route.template:
                meta["route_template"] = route.template
        if req.tool_name:
            meta["tool"] = req.tool_name
        meta["t_link_us"] = sum(ctx.timings_ns.values()) // 1000
        decision.response_headers.update(ctx.response_headers)
        decision.response_headers.setdefault("x-request-id", req.request_id)

    def allow(self, ctx: RequestContext) -> Decision:
        req = ctx.request
        p = ctx.principal
        decision = Decision(allowed=True)
        up = decision.upstream_headers
        if "x-request-id" not in req.headers:
            up["x-request-id"] = req.request_id
        tenant = p.tenant or (ctx.route.tenant if ctx.route and ctx.route.tenant else "")
        remove = [h for h in req.headers if h.startswith(self._strip_prefix)]
        if tenant:
            up[self._h_tenant] = tenant
        if p.consumer:
            up[self._h_consumer] = p.consumer
        if p.subject:
            up[self._h_subject] = p.subject
        up.update(ctx.upstream_headers)
        # A spoofed header we also set is overwritten, not removed.
        decision.remove_headers = [h for h in remove if h not in up] + ctx.remove_headers
        self._common(ctx, decision)
        return decision

    def finish_denial(self, ctx: RequestContext, decision: Decision) -> Decision:
        self._common(ctx, decision)
        if decision.body is None:
            decision.body = json.dumps(
                {
                    "error": _ERROR_TITLES.get(decision.http_status, "error"),
                    "reason": decision.message or decision.reason,
                    "request_id": ctx.request.request_id,
                },
                separators=(",", ":"),
            ).encode()
            decision.content_type = "application/json"
        return decision
