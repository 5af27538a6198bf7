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

from link.decision_metadata import wire_metadata
from link.grpc.shell import PipelineShell, unreadable_check
from link.model import Decision, PeerIdentity, Request
from link.telemetry.propagation import trace_context_from_metadata

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
        stream_id=http.id,
        envoy_time=(attrs.request.time.seconds, attrs.request.time.nanos) if attrs.request.HasField("time")
        else None,
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


def _policy_header(key: str, value: str) -> base_pb2.HeaderValueOption:
    # No action set, like OPA-Envoy: Envoy's default (request headers replaced, response headers appended).
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, value=value))


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
    """Map a Decision onto a CheckResponse (the policy's part exactly as OPA-Envoy would send it)."""
    meta = metadata_struct(wire_metadata(decision))
    policy = decision.policy
    if decision.allowed:
        ok = external_auth_pb2.OkHttpResponse(
            headers=[_header(k, v) for k, v in decision.upstream_headers.items()],
            headers_to_remove=decision.remove_headers,
            response_headers_to_add=[_header(k, v) for k, v in decision.response_headers.items()],
        )
        if policy is not None:
            ok.headers.extend([_policy_header(k, v) for k, v in policy.upstream_headers])
            ok.response_headers_to_add.extend([_policy_header(k, v) for k, v in policy.response_headers])
            if policy.query_to_set:
                ok.query_parameters_to_set.extend(
                    [base_pb2.QueryParameter(key=k, value=v) for k, v in policy.query_to_set])
            ok.query_parameters_to_remove.extend(policy.query_to_remove)
        return external_auth_pb2.CheckResponse(status=_OK_STATUS, ok_response=ok, dynamic_metadata=meta)
    headers = [_header(k, v) for k, v in decision.response_headers.items()]
    if decision.policy_response:
        if policy is not None:
            headers.extend([_policy_header(k, v) for k, v in policy.response_headers])
    elif decision.body is not None:
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


class AuthorizationService(PipelineShell, external_auth_pb2_grpc.AuthorizationServicer):
    """``envoy.service.auth.v3.Authorization``: a thin shell over the pipeline."""

    async def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> external_auth_pb2.CheckResponse:
        try:
            req = request_from_check(request)
        except Exception:  # malformed attributes: refuse clearly rather than crash the stream
            _log.exception("could not read CheckRequest")
            return check_response(unreadable_check())
        if self._trace_context and context is not None:
            req.context.update(trace_context_from_metadata(context.invocation_metadata()))
        return check_response(await self.authorize(req))
