"""Envoy's gRPC access-log service: how Link learns the outcome of every request, off the request path.

Envoy batches finished requests onto a long-lived stream; each entry carries
status, timings, byte counts and the dynamic metadata Link's ext_authz set. Each
entry becomes a :class:`RequestOutcome` for the sinks (metering, metrics).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from google.protobuf import duration_pb2, json_format, struct_pb2

from link import metrics
from link.events import OutcomeBus, RequestOutcome
from link.grpc.authz import METADATA_NAMESPACE
from link.model import Outcome
from link.telemetry.propagation import trace_id_of

_log = logging.getLogger("stoa.link.grpc.accesslog")


def _ms(d: duration_pb2.Duration) -> float:
    return d.seconds * 1000.0 + d.nanos / 1e6


def _final_outcome(decided: str, status: int) -> Outcome:
    """Link's outcome, corrected by what actually happened upstream."""
    try:
        outcome = Outcome(decided) if decided else Outcome.SUCCESS
    except ValueError:
        outcome = Outcome.ERROR
    if outcome is Outcome.SUCCESS:
        if status >= 500 or status == 0:
            return Outcome.ERROR
        if status == 404:
            return Outcome.NOT_FOUND
    return outcome


def outcome_from_entry(entry: accesslog_pb2.HTTPAccessLogEntry) -> RequestOutcome:
    """Join one access-log entry with the decision Link recorded in its dynamic metadata."""
    common = entry.common_properties
    req = entry.request
    resp = entry.response
    meta = _metadata(common.metadata.filter_metadata.get(METADATA_NAMESPACE))
    status = resp.response_code.value
    latency = _ms(common.time_to_last_downstream_tx_byte) or _ms(common.duration)
    backend = 0.0
    if common.HasField("time_to_first_upstream_tx_byte") and common.HasField("time_to_last_upstream_rx_byte"):
        backend = max(0.0, _ms(common.time_to_last_upstream_rx_byte) - _ms(common.time_to_first_upstream_tx_byte))
    if not meta:
        decided = Outcome.ERROR.value if status >= 500 or status == 0 else ""
        reason = "link_unreachable" if _link_failed(common) else ""
    else:
        decided = str(meta.get("outcome", ""))
        reason = str(meta.get("reason", ""))
    return RequestOutcome(
        request_id=req.request_id or str(meta.get("request_id", "")),
        timestamp=common.start_time.seconds + common.start_time.nanos / 1e9,
        method=_method(req),
        path=(req.original_path or req.path).partition("?")[0],
        http_status=status,
        outcome=_final_outcome(decided, status),
        decision_id=str(meta.get("decision_id", "")),
        reason=reason,
        tenant=str(meta.get("tenant", "")),
        consumer=str(meta.get("consumer", "")),
        subject=str(meta.get("subject", "")),
        credential=str(meta.get("credential", "")),
        route=str(meta.get("route", "")) or common.route_name,
        route_template=str(meta.get("route_template", "")),
        api=str(meta.get("api", "")),
        tool=str(meta.get("tool", "")),
        scopes=str(meta.get("scopes", "")).split() if meta.get("scopes") else [],
        roles=str(meta.get("roles", "")).split() if meta.get("roles") else [],
        latency_ms=latency,
        t_gateway_ms=max(0.0, latency - backend),
        t_backend_ms=backend,
        t_link_ms=float(meta.get("t_link_us", 0)) / 1000.0,
        request_size_bytes=req.request_headers_bytes + req.request_body_bytes,
        response_size_bytes=resp.response_headers_bytes + resp.response_body_bytes,
        trace_id=str(meta.get("trace_id", "")) or trace_id_of(req.request_headers.get("traceparent", "")),
        source="envoy",
    )


def _metadata(ns: struct_pb2.Struct | None) -> dict[str, Any]:
    """The decision's metadata as plain values; direct field reads (json_format is several times slower)."""
    out: dict[str, Any] = {}
    if ns is None:
        return out
    for key, value in ns.fields.items():
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            out[key] = value.string_value
        elif kind == "number_value":
            out[key] = value.number_value
        elif kind == "bool_value":
            out[key] = value.bool_value
        elif kind in ("struct_value", "list_value"):
            out[key] = json_format.MessageToDict(value)
    return out


def _method(req: accesslog_pb2.HTTPRequestProperties) -> str:
    name: str = base_pb2.RequestMethod.Name(req.request_method)
    return "" if name == "METHOD_UNSPECIFIED" else name


def _link_failed(common: accesslog_pb2.AccessLogCommon) -> bool:
    """ext_authz could not reach Link (Envoy's UAEX flag carries the failure reason)."""
    return common.response_flags.HasField("unauthorized_details")


class AccessLogService(als_pb2_grpc.AccessLogServiceServicer):
    """``envoy.service.accesslog.v3.AccessLogService``: entries -> outcomes -> sinks."""

    def __init__(self, bus: OutcomeBus) -> None:
        self._bus = bus

    async def StreamAccessLogs(
        self,
        request_iterator: AsyncIterator[als_pb2.StreamAccessLogsMessage],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> als_pb2.StreamAccessLogsResponse:
        async for message in request_iterator:
            for entry in message.http_logs.log_entry:
                metrics.ACCESS_LOG_ENTRIES.inc()
                try:
                    self._bus.offer(outcome_from_entry(entry))
                except Exception:
                    _log.exception("could not handle an access-log entry")
        return als_pb2.StreamAccessLogsResponse()
