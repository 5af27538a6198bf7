"""W3C trace context: reading ``traceparent`` and finding the parent of Link's decision span.

When Envoy traces, its ext_authz client span travels in the gRPC call's
metadata, not in the checked request's headers (those only carry what the
client sent). The adapters copy it into ``Request.context`` with
:func:`trace_context_from_metadata`; the decision span prefers it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from link.model import Request

__all__ = ["TraceParent", "format_traceparent", "parse_traceparent", "trace_context_from_metadata", "trace_id_of"]

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$")

# Keys under which the adapters put the trace context of the gRPC call into Request.context.
CONTEXT_TRACEPARENT = "traceparent"
CONTEXT_TRACESTATE = "tracestate"


@dataclass(frozen=True, slots=True)
class TraceParent:
    trace_id: str  # 32 lower-case hex digits
    span_id: str  # 16 lower-case hex digits
    sampled: bool


_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def _valid(value: str) -> re.Match[str] | None:
    """The match of a valid version-00-compatible ``traceparent`` (all-zero ids and version ff are not)."""
    m = _TRACEPARENT.match(value.strip().lower())
    if m is None or m.group(1) == "ff" or m.group(2) == _ZERO_TRACE or m.group(3) == _ZERO_SPAN:
        return None
    return m


def parse_traceparent(value: str) -> TraceParent | None:
    """A valid version-00-compatible ``traceparent``, or None (all-zero ids are invalid)."""
    m = _valid(value)
    if m is None:
        return None
    return TraceParent(trace_id=m.group(2), span_id=m.group(3), sampled=bool(int(m.group(4), 16) & 1))


def trace_id_of(traceparent: str) -> str:
    """The trace id of a valid ``traceparent``, else ""; what events and snapshots record.

    Without building a :class:`TraceParent` (the access-log feed reads one per request; the frozen
    dataclass was most of the cost).
    """
    m = _valid(traceparent) if traceparent else None
    return m.group(2) if m is not None else ""


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def trace_context_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """``traceparent``/``tracestate`` from gRPC invocation metadata, for ``Request.context``."""
    out: dict[str, str] = {}
    for key, value in metadata or ():
        k = key.lower()
        if k in (CONTEXT_TRACEPARENT, CONTEXT_TRACESTATE):
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            if text:
                out[k] = text
    if CONTEXT_TRACEPARENT in out and parse_traceparent(out[CONTEXT_TRACEPARENT]) is None:
        return {}
    return out


def parent_carrier(request: Request) -> tuple[dict[str, str], bool]:
    """The carrier holding the decision span's parent, and whether it came from Envoy's tracer.

    Envoy's ext_authz span (gRPC metadata, copied to ``Request.context``) wins over
    the client's own ``traceparent`` header: it is the same trace, one hop closer.
    """
    ctx = request.context
    if parse_traceparent(ctx.get(CONTEXT_TRACEPARENT, "")) is not None:
        carrier = {CONTEXT_TRACEPARENT: ctx[CONTEXT_TRACEPARENT]}
        if ctx.get(CONTEXT_TRACESTATE):
            carrier[CONTEXT_TRACESTATE] = ctx[CONTEXT_TRACESTATE]
        return carrier, True
    headers = request.headers
    if parse_traceparent(headers.get("traceparent", "")) is not None:
        carrier = {"traceparent": headers["traceparent"]}
        if headers.get("tracestate"):
            carrier["tracestate"] = headers["tracestate"]
        return carrier, False
    return {}, False
