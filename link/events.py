"""Finished-request events handed to the sinks (metering, snapshots, traces).

The request path only builds these small objects and offers them; each sink
queues them and does its I/O elsewhere. ``offer`` never blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from link.model import Outcome


@dataclass(slots=True)
class RequestOutcome:
    """One finished request: Link's decision joined with what Envoy observed.

    Built from Envoy's access-log feed (data plane) or by the MCP server (tool calls).
    """

    request_id: str
    timestamp: float  # epoch seconds when the request started
    method: str
    path: str
    http_status: int
    outcome: Outcome
    decision_id: str = ""
    reason: str = ""
    tenant: str = ""
    consumer: str = ""
    subject: str = ""
    credential: str = ""
    route: str = ""
    route_template: str = ""
    api: str = ""
    tool: str = ""
    scopes: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    t_gateway_ms: float = 0.0
    t_backend_ms: float = 0.0
    t_link_ms: float = 0.0
    request_size_bytes: int = 0
    response_size_bytes: int = 0
    trace_id: str = ""
    source: str = "envoy"  # envoy | mcp


@dataclass(slots=True)
class HttpMessage:
    """Headers and a capped body excerpt of one side of an exchange."""

    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    body_truncated: bool = False


@dataclass(slots=True)
class Exchange:
    """A request and its response as seen through ext_proc (for error snapshots)."""

    request_id: str
    timestamp: float
    method: str
    path: str
    status: int
    request: HttpMessage
    response: HttpMessage
    tenant: str = ""
    consumer: str = ""
    subject: str = ""
    route: str = ""
    api: str = ""
    tool: str = ""
    trace_id: str = ""
    decision_id: str = ""
    outcome: Outcome = Outcome.SUCCESS
    reason: str = ""
    scopes: list[str] = field(default_factory=list)  # the caller's, sorted
    roles: list[str] = field(default_factory=list)
    # phase or step name -> milliseconds
    timing_ms: dict[str, float] = field(default_factory=dict)


class OutcomeSink(Protocol):
    """Takes finished requests; must return at once."""

    def offer(self, outcome: RequestOutcome) -> None: ...


class ExchangeSink(Protocol):
    """Takes captured exchanges; must return at once."""

    def wants(self, status: int, tenant: str, route_snapshots: bool) -> bool: ...

    def offer(self, exchange: Exchange) -> None: ...


class DurableOutcomeSink(OutcomeSink, Protocol):
    """A sink that can make what it was offered survive a crash of the process (see ``commit``)."""

    def commit(self) -> None: ...


class OutcomeBus:
    """Fans finished requests out to every registered sink."""

    def __init__(self) -> None:
        self._sinks: list[OutcomeSink] = []
        self._durable: list[DurableOutcomeSink] = []

    def add(self, sink: OutcomeSink) -> None:
        self._sinks.append(sink)
        if callable(getattr(sink, "commit", None)):
            self._durable.append(sink)  # type: ignore[arg-type]

    def offer(self, outcome: RequestOutcome) -> None:
        for sink in self._sinks:
            sink.offer(outcome)

    def commit(self) -> None:
        """Make everything offered so far durable (one buffered write per sink; not for the request path)."""
        for sink in self._durable:
            sink.commit()
