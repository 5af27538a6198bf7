"""ext_proc adapter: one bidirectional stream per HTTP request.

Envoy sends only the phases the route asked for (``processing_mode``); every
message gets exactly one answer, except in observability mode where Envoy
expects none. Used where bodies matter: contract validation of request bodies
and error snapshots of responses. When ext_authz already decided (its dynamic
metadata is forwarded in ``metadata_context``) the decision is not taken again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc
from envoy.type.v3 import http_status_pb2
from google.protobuf import json_format, struct_pb2

from link import metrics
from link.decision_metadata import record_from_wire, wire_metadata
from link.events import ExchangeSink, HttpMessage
from link.grpc.authz import METADATA_NAMESPACE, metadata_struct
from link.grpc.headers import header_map
from link.grpc.shell import PipelineShell
from link.model import CredentialKind, Decision, DecisionRecord, Principal, Request, RequestContext
from link.outcomes import response_exchange
from link.telemetry.propagation import trace_context_from_metadata

_log = logging.getLogger("stoa.link.grpc.extproc")

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
# The rest of the stream without the response body: it streams past ext_proc, unbuffered.
_NO_RESPONSE_BODY = processing_mode_pb2.ProcessingMode(
    response_header_mode=processing_mode_pb2.ProcessingMode.SEND,
    response_body_mode=processing_mode_pb2.ProcessingMode.NONE,
    response_trailer_mode=processing_mode_pb2.ProcessingMode.SKIP,
)


def _set(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, raw_value=value.encode()), append_action=_OVERWRITE
    )


def _append(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, raw_value=value.encode()),
        append_action=base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD,
    )


def _request_from_headers(headers: dict[str, str]) -> Request:
    full = headers.get(":path", "/")
    path, _, query = full.partition("?")
    return Request(
        method=headers.get(":method", "GET"),
        path=path or "/",
        query=query,
        headers={k: v for k, v in headers.items() if not k.startswith(":")},
        host=headers.get(":authority", ""),
        scheme=headers.get(":scheme", "http"),
        request_id=headers.get("x-request-id", ""),
    )


def _immediate(decision: Decision) -> ep.ProcessingResponse:
    headers = [_set(k, v) for k, v in decision.response_headers.items()]
    if decision.policy_response:  # the policy's own response: its headers, no content type of Link's
        if decision.policy is not None:
            headers.extend(_append(k, v) for k, v in decision.policy.response_headers)
    elif decision.body is not None:
        headers.append(_set("content-type", decision.content_type))
    return ep.ProcessingResponse(
        immediate_response=ep.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=decision.http_status),
            headers=ep.HeaderMutation(set_headers=headers),
            body=decision.body or b"",
            details=decision.reason,
        )
    )


@dataclass(slots=True)
class _Stream:
    """What one stream learned about its request so far."""

    ctx: RequestContext | None = None
    record: DecisionRecord = field(default_factory=DecisionRecord)
    started: float = field(default_factory=time.time)
    started_ns: int = field(default_factory=time.perf_counter_ns)
    request: HttpMessage = field(default_factory=HttpMessage)
    response: HttpMessage = field(default_factory=HttpMessage)
    status: int = 0
    upstream_ns: int = 0
    capture: bool = False
    done: bool = False
    # ext_proc took the decision itself (ext_authz did not run): it also checks the body.
    decided_here: bool = False
    body_checked: bool = False
    trace: dict[str, str] = field(default_factory=dict)


class ExternalProcessorService(PipelineShell, ep_grpc.ExternalProcessorServicer):
    """``envoy.service.ext_proc.v3.ExternalProcessor``."""

    async def Process(
        self,
        request_iterator: AsyncIterator[ep.ProcessingRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[ep.ProcessingResponse]:
        state = _Stream()
        if self._trace_context and context is not None:
            state.trace = trace_context_from_metadata(context.invocation_metadata())
        result = "ok"
        try:
            async for msg in request_iterator:
                try:
                    response = await self._handle(msg, state)
                except Exception:
                    # One bad message must not take the stream down: answer "continue" and go on.
                    _log.exception("ext_proc message failed")
                    result = "error"
                    response = self._continue(msg)
                if msg.observability_mode:
                    continue
                if response is not None:
                    yield response
                if state.done:
                    break
        finally:
            self._finish(state)
            metrics.EXT_PROC_STREAMS.labels(result).inc()

    # -- phases ------------------------------------------------------------
    async def _handle(self, msg: ep.ProcessingRequest, state: _Stream) -> ep.ProcessingResponse | None:
        kind = msg.WhichOneof("request")
        if kind == "request_headers":
            return await self._request_headers(msg, state)
        if kind == "request_body":
            return await self._request_body(msg.request_body, state)
        if kind == "response_headers":
            return self._response_headers(msg.response_headers, state)
        if kind == "response_body":
            self._append(state.response, msg.response_body.body)
            return ep.ProcessingResponse(response_body=ep.BodyResponse())
        if kind == "request_trailers":
            return ep.ProcessingResponse(request_trailers=ep.TrailersResponse())
        if kind == "response_trailers":
            return ep.ProcessingResponse(response_trailers=ep.TrailersResponse())
        _log.warning("ext_proc: unknown message kind %r ignored", kind)
        return None

    def _continue(self, msg: ep.ProcessingRequest) -> ep.ProcessingResponse | None:
        kind = msg.WhichOneof("request")
        if kind in ("request_headers", "response_headers"):
            return ep.ProcessingResponse(**{kind: ep.HeadersResponse()})
        if kind in ("request_body", "response_body"):
            return ep.ProcessingResponse(**{kind: ep.BodyResponse()})
        if kind in ("request_trailers", "response_trailers"):
            return ep.ProcessingResponse(**{kind: ep.TrailersResponse()})
        return None

    async def _request_headers(self, msg: ep.ProcessingRequest, state: _Stream) -> ep.ProcessingResponse:
        headers = header_map(msg.request_headers.headers)
        req = _request_from_headers(headers)
        req.context.update(state.trace)
        # Pseudo-headers kept for the snapshot's replay command (host and scheme).
        state.request.headers = {k: v for k, v in headers.items() if k in (":authority", ":scheme")} | req.headers
        decided = msg.metadata_context.filter_metadata.get(METADATA_NAMESPACE)
        mutation = ep.HeaderMutation()
        emitted: struct_pb2.Struct | None = None
        if decided is not None and decided.fields:
            # ext_authz already decided; keep what it learned for the body and the snapshot.
            state.record = record = record_from_wire(json_format.MessageToDict(decided))
            req.ensure_request_id()
            ctx = RequestContext(request=req, route=self._pipeline.resolve_route(req))
            ctx.principal = Principal(
                kind=_credential(record.credential),
                subject=record.subject,
                consumer=record.consumer,
                tenant=record.tenant,
            )
            ctx.decision_id = record.decision_id
            state.ctx = ctx
        else:
            ctx = RequestContext(request=req)
            ctx.record.entry = "ext_proc"
            state.decided_here = True
            result = await self._pipeline.run(req, ctx)
            state.ctx = result.ctx
            decision = result.decision
            state.record = decision.record
            if not decision.allowed:
                state.status = decision.http_status
                state.response.body = (decision.body or b"")[: self._cap]
                state.done = True
                response = _immediate(decision)
                response.dynamic_metadata.CopyFrom(_decision_metadata(wire_metadata(decision)))
                return response
            # The policy's upstream headers replace, as through ext_authz. Its query parameter changes
            # have no ext_proc header form here: they need ext_authz (docs/opa-envoy.md).
            policy_headers = decision.policy.upstream_headers if decision.policy is not None else []
            mutation = ep.HeaderMutation(
                set_headers=[_set(k, v) for k, v in [*decision.upstream_headers.items(), *policy_headers]],
                remove_headers=decision.remove_headers,
            )
            emitted = _decision_metadata(wire_metadata(decision))
        route = state.ctx.route if state.ctx else None
        sink = self._sink()
        state.capture = sink is not None and route is not None and route.snapshots
        return ep.ProcessingResponse(
            request_headers=ep.HeadersResponse(response=ep.CommonResponse(header_mutation=mutation)),
            dynamic_metadata=emitted,
        )

    async def _request_body(self, body: ep.HttpBody, state: _Stream) -> ep.ProcessingResponse:
        self._append(state.request, body.body)
        ctx = state.ctx
        # When ext_authz decided, it already saw this body (with_request_body on body routes).
        # BUFFERED_PARTIAL sends one message: the whole body, or what fits Envoy's buffer without
        # end_of_stream. The pipeline checks it bounded by the contract's own limit (the snapshot
        # excerpt is capped far lower and never decides what is checked).
        if ctx is not None and self._pipeline.checks_bodies and state.decided_here and not state.body_checked:
            state.body_checked = True
            decision = await self._pipeline.check_body(ctx, body.body, complete=body.end_of_stream)
            if decision is not None:
                state.status = decision.http_status
                state.record.merge(decision.record)
                state.done = True
                return _immediate(decision)
        return ep.ProcessingResponse(request_body=ep.BodyResponse())

    def _response_headers(self, msg: ep.HttpHeaders, state: _Stream) -> ep.ProcessingResponse:
        headers = header_map(msg.headers)
        try:
            state.status = int(headers.get(":status", "0"))
        except ValueError:
            state.status = 0
        state.upstream_ns = time.perf_counter_ns() - state.started_ns
        state.response.headers = {k: v for k, v in headers.items() if not k.startswith(":")}
        req_id = state.ctx.request.request_id if state.ctx else ""
        set_headers = [_set("x-request-id", req_id)] if req_id and "x-request-id" not in headers else []
        response = ep.ProcessingResponse(
            response_headers=ep.HeadersResponse(
                response=ep.CommonResponse(header_mutation=ep.HeaderMutation(set_headers=set_headers))
            )
        )
        if msg.end_of_stream:
            state.done = True
        elif not (state.capture and self._snapshot_sink(state) is not None):
            # No snapshot of this response: Envoy need not buffer its body, nor send it here.
            response.mode_override.CopyFrom(_NO_RESPONSE_BODY)
        return response

    def _append(self, side: HttpMessage, chunk: bytes) -> None:
        room = self._cap - len(side.body)
        if room > 0:
            side.body += chunk[:room]
        if len(chunk) > room:
            side.body_truncated = True

    def _snapshot_sink(self, state: _Stream) -> ExchangeSink | None:
        """The snapshot sink if it wants this exchange (its status known), else None."""
        sink = self._sink()
        ctx = state.ctx
        if sink is None or ctx is None or not state.status:
            return None
        route = ctx.route
        if not sink.wants(state.status, ctx.principal.tenant or state.record.tenant, bool(route and route.snapshots)):
            return None
        return sink

    def _finish(self, state: _Stream) -> None:
        """Hand the exchange to the snapshot sink if it wants this one (never blocks)."""
        sink = self._snapshot_sink(state)
        ctx = state.ctx
        if sink is None or ctx is None:
            return
        sink.offer(response_exchange(ctx, state.record, status=state.status, started=state.started,
                                     request=state.request, response=state.response, upstream_ns=state.upstream_ns))


_CREDENTIALS = {k.value: k for k in CredentialKind}


def _credential(value: str) -> CredentialKind:
    return _CREDENTIALS.get(value, CredentialKind.ANONYMOUS)


def _decision_metadata(meta: dict[str, Any]) -> struct_pb2.Struct:
    """Emit the decision (:func:`wire_metadata`) under the ext_authz namespace: the access log reads one shape."""
    return struct_pb2.Struct(fields={METADATA_NAMESPACE: struct_pb2.Value(struct_value=metadata_struct(meta))})
