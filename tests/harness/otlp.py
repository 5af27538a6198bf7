"""A test OTLP/gRPC trace receiver: a real TraceService on a free loopback port that records spans."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.harness.procs import free_port

# opentelemetry.proto.trace.v1.Span.SpanKind numbers -> short names.
_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which) if which else None


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, flattened for assertions (ids as lower-case hex)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int
    service_name: str
    resource: dict[str, Any] = field(default_factory=dict)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver._record(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """Context manager: ``with OtlpReceiver() as r: ... r.endpoint ... r.spans``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.address = f"127.0.0.1:{self.port}"
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self.export_calls = 0
        self._server: grpc.Server | None = None

    def __enter__(self) -> OtlpReceiver:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), server)
        server.add_insecure_port(self.address)
        server.start()
        self._server = server
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop(grace=0).wait(5)
            self._server = None

    def _record(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        out: list[ReceivedSpan] = []
        for rs in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            service = str(resource.get("service.name", ""))
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append(_flatten(s, service, resource))
        with self._lock:
            self.export_calls += 1
            self._spans.extend(out)

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def wait_for(self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 10.0) -> bool:
        """Poll until ``predicate(spans)`` holds (bounded); returns whether it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.spans):
                return True
            time.sleep(0.05)
        return predicate(self.spans)

    def by_trace(self, trace_id: str) -> Iterator[ReceivedSpan]:
        return (s for s in self.spans if s.trace_id == trace_id)


def _flatten(s: trace_pb2.Span, service: str, resource: dict[str, Any]) -> ReceivedSpan:
    return ReceivedSpan(
        name=s.name,
        trace_id=s.trace_id.hex(),
        span_id=s.span_id.hex(),
        parent_span_id=s.parent_span_id.hex(),
        kind=_KINDS.get(s.kind, str(s.kind)),
        start_ns=s.start_time_unix_nano,
        end_ns=s.end_time_unix_nano,
        attributes={kv.key: _value(kv.value) for kv in s.attributes},
        status_code=s.status.code,
        service_name=service,
        resource=resource,
    )
