"""What every Envoy-facing service holds: the pipeline and the sinks' hooks."""

from __future__ import annotations

from collections.abc import Callable

from link.events import ExchangeSink
from link.pipeline import Pipeline


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
