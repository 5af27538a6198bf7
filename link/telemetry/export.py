"""An exporter wrapper that remembers whether spans actually reach the collector.

The OTLP exporter only logs a failed export; wrapped, every batch counts in
``stoa_link_tracing_spans_exported_total{result}``, ``stoa_link_tracing_exporter_up``
says whether the last export succeeded, and the tracing component's readiness
detail tells a person what is happening (it never makes Link unready: traces
are diagnostics, and a collector outage must not take traffic down with it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import Counter, Gauge

from link.metrics import REGISTRY

__all__ = ["ObservedExporter"]

SPANS_EXPORTED = Counter(
    "stoa_link_tracing_spans_exported",
    "Spans handed to the OTLP collector, by result (ok, failed: the collector did not take them).",
    ["result"],
    registry=REGISTRY,
)
EXPORTER_UP = Gauge(
    "stoa_link_tracing_exporter_up",
    "1 when the last span export reached the collector, 0 when it failed.",
    registry=REGISTRY,
)


class ObservedExporter(SpanExporter):
    """Delegates to ``inner``; counts and remembers the outcome of each export (runs on the export thread)."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.exported = 0
        self.failed = 0
        self.failing_since: float | None = None
        self.last_ok_at: float | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:  # an exporter bug must not kill the batch thread
            result = SpanExportResult.FAILURE
        ok = result is SpanExportResult.SUCCESS
        with self._lock:
            if ok:
                self.exported += len(spans)
                self.last_ok_at = time.time()
                self.failing_since = None
            else:
                self.failed += len(spans)
                self.failing_since = self.failing_since or time.time()
        SPANS_EXPORTED.labels("ok" if ok else "failed").inc(len(spans))
        EXPORTER_UP.set(1 if ok else 0)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def describe(self) -> str:
        """One line for the readiness detail."""
        with self._lock:
            if self.failing_since is not None:
                ago = time.time() - self.failing_since
                return (f"FAILING for {ago:.0f}s: {self.failed} span(s) not accepted by the collector so far "
                        "(check the endpoint, its scheme: http:// plain, https:// TLS, and that it listens)")
            if self.last_ok_at is not None:
                return f"ok, {self.exported} span(s) exported, last {time.time() - self.last_ok_at:.0f}s ago"
            return "no span exported yet"
