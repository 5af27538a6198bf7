"""Envoy's gRPC access-log service: how Link learns the outcome of every request, off the request path.

Envoy batches finished requests onto a long-lived stream; each entry carries
status, timings, byte counts and the dynamic metadata Link's ext_authz set. Each
entry becomes a :class:`RequestOutcome` for the sinks (metering, metrics).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from google.protobuf import duration_pb2, json_format, struct_pb2

from link import metrics
from link.decision_metadata import RECORD_KEYS, STRING_FIELDS, set_from_wire
from link.events import OutcomeBus, RequestOutcome
from link.grpc.authz import METADATA_NAMESPACE
from link.model import DecisionRecord, Outcome
from link.outcomes import final_outcome, request_outcome
from link.telemetry.propagation import trace_id_of

_log = logging.getLogger("stoa.link.grpc.accesslog")
# A message holds a flush interval's worth of requests (hundreds). Entries are read in slices that
# end after _SLICE_S of work (or _SLICE_ENTRIES entries), each written ahead to the sinks, then the
# loop takes its turn: a check waiting behind the feed waits for one slice, not for the message.
_SLICE_S = 0.000_25
_SLICE_ENTRIES = 32


def _ms(d: duration_pb2.Duration) -> float:
    return d.seconds * 1000.0 + d.nanos / 1e6


def outcome_from_entry(entry: accesslog_pb2.HTTPAccessLogEntry) -> RequestOutcome:
    """Join one access-log entry with the decision Link recorded in its dynamic metadata."""
    common = entry.common_properties
    req = entry.request
    resp = entry.response
    record = _record_of(common.metadata.filter_metadata.get(METADATA_NAMESPACE))
    status = resp.response_code.value
    latency = _ms(common.time_to_last_downstream_tx_byte) or _ms(common.duration)
    backend = 0.0
    if common.HasField("time_to_first_upstream_tx_byte") and common.HasField("time_to_last_upstream_rx_byte"):
        backend = max(0.0, _ms(common.time_to_last_upstream_rx_byte) - _ms(common.time_to_first_upstream_tx_byte))
    if not record.route:
        record.route = common.route_name  # Link's route, else Envoy's
    if not record.decision_id and not record.outcome:  # Link never answered (or is not in the chain)
        record.outcome = Outcome.ERROR.value if status >= 500 or status == 0 else ""
        record.reason = "link_unreachable" if _link_failed(common) else ""
    return request_outcome(
        record,
        request_id=req.request_id,
        timestamp=common.start_time.seconds + common.start_time.nanos / 1e9,
        method=_method(req),
        path=(req.original_path or req.path).partition("?")[0],
        http_status=status,
        outcome=final_outcome(record, status),
        source="envoy",
        trace_id=trace_id_of(req.request_headers.get("traceparent", "")),
        latency_ms=latency,
        t_gateway_ms=max(0.0, latency - backend),
        t_backend_ms=backend,
        request_size_bytes=req.request_headers_bytes + req.request_body_bytes,
        response_size_bytes=resp.response_headers_bytes + resp.response_body_bytes,
    )


def _record_of(ns: struct_pb2.Struct | None) -> DecisionRecord:
    """The decision record in Link's keys of the metadata, read in one pass (the policy's own keys are
    skipped): a string under a string field is set as it is, anything else converted by its field."""
    record = DecisionRecord()
    if ns is None:
        return record
    fields = ns.fields
    for key in fields:
        if key not in RECORD_KEYS:
            continue
        value = fields[key]
        text = value.string_value
        name = STRING_FIELDS.get(key) if text else None
        if name is not None:
            setattr(record, name, text)
        else:
            set_from_wire(record, key, text or _plain(value))
    return record


def _plain(value: struct_pb2.Value) -> Any:
    """A non-string metadata value as a plain one (what the gRPC transport may hold: numbers, booleans)."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    if kind in ("struct_value", "list_value"):
        return json_format.MessageToDict(value)
    return None


# Enum number -> method name, computed once (the enum lookup ran on every entry).
_METHODS = {v: ("" if k == "METHOD_UNSPECIFIED" else k) for k, v in base_pb2.RequestMethod.items()}


def _method(req: accesslog_pb2.HTTPRequestProperties) -> str:
    return _METHODS.get(req.request_method, "")


def _link_failed(common: accesslog_pb2.AccessLogCommon) -> bool:
    """ext_authz could not reach Link (Envoy's UAEX flag carries the failure reason)."""
    return common.response_flags.HasField("unauthorized_details")


class AccessLogService(als_pb2_grpc.AccessLogServiceServicer):
    """``envoy.service.accesslog.v3.AccessLogService``: entries -> outcomes -> sinks."""

    def __init__(self, bus: OutcomeBus) -> None:
        self._bus = bus
        self._entries = metrics.bound_counter(metrics.ACCESS_LOG_ENTRIES)

    async def StreamAccessLogs(
        self,
        request_iterator: AsyncIterator[als_pb2.StreamAccessLogsMessage],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> als_pb2.StreamAccessLogsResponse:
        clock = time.perf_counter
        offer = self._bus.offer
        async for message in request_iterator:
            entries = message.http_logs.log_entry
            last = len(entries) - 1
            slice_end = clock() + _SLICE_S
            taken = 0
            for n, entry in enumerate(entries):
                try:
                    offer(outcome_from_entry(entry))
                except Exception:
                    _log.exception("could not handle an access-log entry")
                taken += 1
                if n == last or taken == _SLICE_ENTRIES or clock() >= slice_end:
                    self._entries.inc(taken)
                    try:
                        # Written ahead (one buffered write per slice): a crash of Link loses none of it.
                        self._bus.commit()
                    except Exception:
                        _log.exception("could not commit access-log entries")
                    if n != last:
                        await asyncio.sleep(0)
                        slice_end = clock() + _SLICE_S
                        taken = 0
        return als_pb2.StreamAccessLogsResponse()
