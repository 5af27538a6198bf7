"""The ext_proc service that changes JSON bodies on proxy routes which declare a body transform.

Only those routes pay for it: the Envoy filter (``stoa.proxy.body_transform``,
a second ext_proc filter just before the router, after every decision) is off
by default and switched on per route, with buffered bodies only on the sides
the route transforms. Each stream names its route in the gRPC initial
metadata; the service answers every message once: headers as they are, each body transformed
or left alone (``content-length`` set to the new size). It runs on its own port and thread, apart from the decision
path, so a slow transform never queues behind ext_authz.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from concurrent import futures
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

from link.grpc.headers import header_map
from link.proxy.transform import transform_body
from link.settings import BodyTransformSettings, RouteSettings

__all__ = ["ROUTE_METADATA", "BodyTransformService", "start_body_transform_server"]

_log = logging.getLogger("stoa.link.proxy")
ROUTE_METADATA = "x-stoa-route"


def _body(new: bytes | None, headers: Mapping[str, str]) -> ep.BodyResponse:
    if new is None:
        return ep.BodyResponse()
    mutation = ep.HeaderMutation()
    if "content-length" in headers:
        # Buffered bodies: the headers have not left yet, so the length is set to what is sent.
        mutation.set_headers.append(base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key="content-length", raw_value=str(len(new)).encode()),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD))
    return ep.BodyResponse(response=ep.CommonResponse(
        header_mutation=mutation, body_mutation=ep.BodyMutation(body=new)))


class BodyTransformService(ep_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    """One stream per request of a transforming route."""

    def __init__(self, routes: Mapping[str, RouteSettings]) -> None:
        self._rules: dict[str, tuple[BodyTransformSettings | None, BodyTransformSettings | None]] = {
            name: (r.transform.request_body, r.transform.response_body)
            for name, r in routes.items() if r.transform is not None}

    def Process(self, request_iterator: Iterator[ep.ProcessingRequest],
                context: grpc.ServicerContext) -> Iterator[ep.ProcessingResponse]:
        route = ""
        for key, value in context.invocation_metadata() or ():
            if key == ROUTE_METADATA:
                route = str(value)
        req_rules, resp_rules = self._rules.get(route, (None, None))
        req_headers: dict[str, str] = {}
        resp_headers: dict[str, str] = {}
        for msg in request_iterator:
            kind = msg.WhichOneof("request")
            try:
                yield self._answer(kind, msg, req_rules, resp_rules, req_headers, resp_headers)
            except Exception:  # a transform bug must not cut the request: pass it through unchanged
                _log.exception("body transform failed on route %s", route)
                yield _passthrough(kind)

    def _answer(self, kind: str | None, msg: ep.ProcessingRequest, req_rules: BodyTransformSettings | None,
                resp_rules: BodyTransformSettings | None, req_headers: dict[str, str],
                resp_headers: dict[str, str]) -> ep.ProcessingResponse:
        if kind == "request_headers":
            req_headers.update(header_map(msg.request_headers.headers))
            return ep.ProcessingResponse(request_headers=ep.HeadersResponse())
        if kind == "response_headers":
            resp_headers.update(header_map(msg.response_headers.headers))
            return ep.ProcessingResponse(response_headers=ep.HeadersResponse())
        if kind == "request_body":
            new = transform_body(msg.request_body.body, req_headers, req_rules) if req_rules else None
            return ep.ProcessingResponse(request_body=_body(new, req_headers))
        if kind == "response_body":
            new = transform_body(msg.response_body.body, resp_headers, resp_rules) if resp_rules else None
            return ep.ProcessingResponse(response_body=_body(new, resp_headers))
        return _passthrough(kind)


def _passthrough(kind: str | None) -> ep.ProcessingResponse:
    if kind == "request_headers":
        return ep.ProcessingResponse(request_headers=ep.HeadersResponse())
    if kind == "response_headers":
        return ep.ProcessingResponse(response_headers=ep.HeadersResponse())
    if kind == "request_body":
        return ep.ProcessingResponse(request_body=ep.BodyResponse())
    if kind == "response_body":
        return ep.ProcessingResponse(response_body=ep.BodyResponse())
    if kind == "request_trailers":
        return ep.ProcessingResponse(request_trailers=ep.TrailersResponse())
    return ep.ProcessingResponse(response_trailers=ep.TrailersResponse())


def start_body_transform_server(routes: list[RouteSettings], address: str, threads: int = 8) -> Any:
    """Serve the transforms on ``address`` (a thread pool of its own); returns the started server."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="body-transform"))
    ep_grpc.add_ExternalProcessorServicer_to_server(BodyTransformService({r.name: r for r in routes}), server)
    if server.add_insecure_port(address) == 0:
        raise OSError(f"proxy.transform_address {address}: the port is in use")
    server.start()
    return server

