"""Response phase: turn what the phases gathered into the final decision.

Allowed: headers for the upstream (principal, request id), client-sent
``x-stoa-*`` headers removed so they cannot be spoofed, dynamic metadata for
Envoy's access log, and what the policy's result asked for (``ctx.policy``).
Refused by Link itself (identity, limits, contracts, a policy that could not
decide): a JSON body ``{"error", "reason", "request_id"}``. Refused by the
policy's own result: exactly the status, headers and body it defines (empty if
it defines none), as OPA-Envoy answers.
"""

from __future__ import annotations

import json

from link.ids import new_id
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
            ctx.decision_id = new_id()
        p = ctx.principal
        route = ctx.route
        record = ctx.record
        if decision.record is not record:
            record.merge(decision.record)  # what the refusing phase noted on its decision
            decision.record = record
        # Envoy's access log already carries the request id and status; only what it cannot know goes here.
        record.decision_id = ctx.decision_id
        record.outcome = decision.outcome.value
        record.reason = decision.reason
        record.tenant = p.tenant or (route.tenant if route and route.tenant else "")
        record.consumer = p.consumer
        record.subject = p.subject
        record.credential = p.kind.value
        record.scopes = tuple(sorted(p.scopes))
        record.roles = tuple(sorted(p.roles))
        if route is not None:
            record.route = route.name
            record.api = route.api or route.name
            record.route_template = route.template or ""
        record.tool = req.tool_name or ""
        record.t_link_us = sum(ctx.timings_ns.values()) // 1000
        decision.response_headers.update(ctx.response_headers)
        decision.response_headers.setdefault("x-request-id", req.request_id)
        if decision.policy is None:
            decision.policy = ctx.policy

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
        if decision.body is None and not decision.policy_response:
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
