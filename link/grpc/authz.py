"""ext_authz adapter: Envoy ``CheckRequest`` -> :class:`Request`, :class:`Decision` -> ``CheckResponse``.

This module and its siblings are the only places that know Envoy's types.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2
from google.rpc import code_pb2, status_pb2

from link.events import Exchange, HttpMessage
from link.grpc.shell import PipelineShell
from link.model import Decision, Outcome, PeerIdentity, Request
from link.pipeline import PipelineResult
from link.telemetry.propagation import trace_context_from_metadata, trace_id_of

_log = logging.getLogger("stoa.link.grpc.authz")

# Dynamic metadata namespace Envoy files ext_authz metadata under (read back by the access log).
METADATA_NAMESPACE = "envoy.filters.http.ext_authz"

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_OK_STATUS = status_pb2.Status(code=code_pb2.OK)
_GRPC_CODE_FOR_HTTP = {401: code_pb2.UNAUTHENTICATED, 429: code_pb2.RESOURCE_EXHAUSTED}


def request_from_check(check: external_auth_pb2.CheckRequest) -> Request:
    """Map a CheckRequest onto the project's Request (no Envoy types survive)."""
    attrs = check.attributes
    http = attrs.request.http
    headers: dict[str, str]
    if http.header_map.headers:
        # encode_raw_headers: values are bytes; repeated names are joined like HTTP does.
        headers = {}
        for h in http.header_map.headers:
            value = h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
            key = h.key.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
    else:
        headers = dict(http.headers)
    full_path = http.path or headers.get(":path", "/")
    path, _, query = full_path.partition("?")
    body: bytes | None = None
    if http.raw_body:
        body = http.raw_body
    elif http.body:
        body = http.body.encode()
    src = attrs.source
    peer: PeerIdentity | None = None
    if src.principal or src.certificate:
        peer = PeerIdentity(principal=src.principal, certificate_pem=src.certificate)
    sock = src.address.socket_address
    dst = attrs.destination.address.socket_address
    return Request(
        method=http.method or headers.get(":method", "GET"),
        path=path or "/",
        query=query,
        headers=headers,
        host=http.host or headers.get(":authority", ""),
        scheme=http.scheme or headers.get(":scheme", "http"),
        body=body,
        # Envoy sets the truncation marker header when with_request_body.allow_partial_message cut the body.
        body_truncated="x-envoy-auth-partial-body" in headers and headers["x-envoy-auth-partial-body"] == "true",
        request_id=headers.get("x-request-id", "") or http.id,
        source_address=sock.address,
        source_port=sock.port_value,
        destination_address=dst.address,
        destination_port=dst.port_value,
        peer=peer,
        protocol=http.protocol,
        context=dict(attrs.context_extensions),
    )


def _header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, value=value), append_action=_OVERWRITE)


def metadata_struct(metadata: dict[str, Any]) -> struct_pb2.Struct:
    """A Struct of the decision's metadata; empty values are left out (this runs on every request)."""
    s = struct_pb2.Struct()
    fields = s.fields
    for key, value in metadata.items():
        if value is None or value == "":
            continue
        if isinstance(value, str):
            fields[key].string_value = value
        elif isinstance(value, bool):
            fields[key].bool_value = value
        elif isinstance(value, int | float):
            fields[key].number_value = value
        elif isinstance(value, list | dict):
            fields[key].CopyFrom(_value(value))
        else:  # Struct holds only JSON values: anything else is stringified rather than dropped.
            fields[key].string_value = str(value)
    return s


def _value(value: Any) -> struct_pb2.Value:
    v = struct_pb2.Value()
    if isinstance(value, dict):
        v.struct_value.update(value)
    else:
        v.list_value.extend(value)
    return v


def check_response(decision: Decision) -> external_auth_pb2.CheckResponse:
    """Map a Decision onto a CheckResponse."""
    meta = metadata_struct(decision.metadata)
    if decision.allowed:
        ok = external_auth_pb2.OkHttpResponse(
            headers=[_header(k, v) for k, v in decision.upstream_headers.items()],
            headers_to_remove=decision.remove_headers,
            response_headers_to_add=[_header(k, v) for k, v in decision.response_headers.items()],
        )
        return external_auth_pb2.CheckResponse(status=_OK_STATUS, ok_response=ok, dynamic_metadata=meta)
    headers = [_header(k, v) for k, v in decision.response_headers.items()]
    if decision.body is not None:
        headers.append(_header("content-type", decision.content_type))
    denied = external_auth_pb2.DeniedHttpResponse(
        status=http_status_pb2.HttpStatus(code=decision.http_status),
        headers=headers,
        body=(decision.body or b"").decode("utf-8", "replace"),
    )
    code = _GRPC_CODE_FOR_HTTP.get(decision.http_status, code_pb2.PERMISSION_DENIED)
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code, message=decision.reason),
        denied_response=denied,
        dynamic_metadata=meta,
    )


def refusal_exchange(result: PipelineResult, body_cap: int) -> Exchange:
    """A refused request as an exchange for error snapshots (it never reaches ext_proc)."""
    ctx, decision = result.ctx, result.decision
    req = ctx.request
    route = ctx.route
    body = req.body or b""
    return Exchange(
        request_id=req.request_id,
        timestamp=req.received_at,
        method=req.method,
        path=req.path + (f"?{req.query}" if req.query else ""),
        status=decision.http_status,
        request=HttpMessage(headers=dict(req.headers), body=body[:body_cap],
                            body_truncated=len(body) > body_cap or req.body_truncated),
        response=HttpMessage(headers={**decision.response_headers, "content-type": decision.content_type},
                             body=(decision.body or b"")[:body_cap]),
        tenant=ctx.principal.tenant or (route.tenant or "" if route else ""),
        consumer=ctx.principal.consumer,
        subject=ctx.principal.subject,
        route=route.name if route else "",
        api=(route.api or route.name) if route else "",
        tool=req.tool_name or "",
        trace_id=trace_id_of(req.headers.get("traceparent", "")),
        decision_id=ctx.decision_id,
        outcome=decision.outcome,
        reason=decision.reason,
        timing_ms={name: ns / 1e6 for name, ns in ctx.timings_ns.items()},
    )


class AuthorizationService(PipelineShell, external_auth_pb2_grpc.AuthorizationServicer):
    """``envoy.service.auth.v3.Authorization``: a thin shell over the pipeline."""

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> external_auth_pb2.CheckResponse:
        try:
            req = request_from_check(request)
        except Exception:  # malformed attributes: refuse clearly rather than crash the stream
            _log.exception("could not read CheckRequest")
            bad = Decision.deny(400, Outcome.INVALID, "bad_request", "malformed request attributes")
            return check_response(bad)
        if self._trace_context and context is not None:
            req.context.update(trace_context_from_metadata(context.invocation_metadata()))
        result = await self._pipeline.run(req)
        decision = result.decision
        if not decision.allowed:
            sink = self._sink()
            route = result.ctx.route
            if sink is not None and sink.wants(decision.http_status, result.ctx.principal.tenant,
                                               bool(route and route.snapshots)):
                sink.offer(refusal_exchange(result, self._cap))  # queued; written off the request path
        return check_response(decision)
