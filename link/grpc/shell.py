"""What every Envoy-facing service holds: the pipeline and the sinks' hooks."""

from __future__ import annotations

from collections.abc import Callable

from link.events import ExchangeSink
from link.model import Decision, Outcome, Request
from link.outcomes import refusal_exchange
from link.pipeline import Pipeline

_UNREADABLE_BODY = b'{"error":"bad_request","reason":"malformed request attributes"}'


def unreadable_check() -> Decision:
    """The refusal of a check whose attributes cannot be read: a 400 with Link's JSON body, never a crash."""
    decision = Decision.deny(400, Outcome.INVALID, "bad_request", "malformed request attributes")
    decision.body = _UNREADABLE_BODY
    decision.record.outcome, decision.record.reason = Outcome.INVALID.value, "bad_request"
    return decision


class PipelineShell:
    """A thin transport shell over the pipeline (ext_authz and ext_proc share it)."""

    def __init__(
        self,
        pipeline: Pipeline,
        exchange_sink: Callable[[], ExchangeSink | None] = lambda: None,
        body_cap: int = 4096,
        trace_context: bool = False,
    ) -> None:
        self._pipeline = pipeline
        self._sink = exchange_sink  # error snapshots; looked up per call (plug-ins install it late)
        self._cap = body_cap  # body excerpt size for snapshots
        # When Envoy traces, its span's context travels in the gRPC call's metadata, not in the request
        # headers. Reading metadata costs a little, so only when tracing is on.
        self._trace_context = trace_context

    async def authorize(self, request: Request) -> Decision:
        """Run the pipeline on one check; a refusal worth a snapshot is queued (off the request path)."""
        result = await self._pipeline.run(request)
        decision = result.decision
        if not decision.allowed:
            sink = self._sink()
            route = result.ctx.route
            if sink is not None and sink.wants(decision.http_status, result.ctx.principal.tenant,
                                               bool(route and route.snapshots)):
                sink.offer(refusal_exchange(result, self._cap))
        return decision
