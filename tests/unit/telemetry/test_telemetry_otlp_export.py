"""Spans really leave through OTLP/gRPC, in batches, to a receiver (tests/harness/otlp.py)."""

from __future__ import annotations

import asyncio

from link.app import LinkApp
from link.model import Request
from link.telemetry import parse_traceparent
from tests.harness.otlp import OtlpReceiver
from tests.unit.telemetry.support import settings


async def test_one_span_per_decision_reaches_the_collector() -> None:
    with OtlpReceiver() as receiver:
        app = LinkApp(settings(**{"tracing.enabled": True, "tracing.otlp_endpoint": receiver.endpoint,
                                  "tracing.service_name": "stoa-link-test"}),
                      plugins=("link.telemetry",))
        await app.start()
        decisions = []
        try:
            for i in range(20):
                req = Request(method="GET", path=f"/public/{i}", headers={}, request_id=f"req-{i}")
                decisions.append((await app.pipeline.run(req)).decision)
        finally:
            await app.stop()  # flushes the batch processor
        ok = await asyncio.to_thread(receiver.wait_for, lambda spans: len(spans) >= 20, 10.0)
        assert ok, f"got {len(receiver.spans)} spans"
        spans = receiver.spans
        assert len(spans) == 20
        assert receiver.export_calls < 20  # batched, not one call per span
        by_request = {s.attributes["stoa.request_id"]: s for s in spans}
        for i, decision in enumerate(decisions):
            span = by_request[f"req-{i}"]
            assert span.kind == "server"
            assert span.service_name == "stoa-link-test"
            assert span.attributes["url.path"] == f"/public/{i}"
            assert span.attributes["stoa.tenant"] == "demo"
            assert decision.record.trace_id == span.trace_id
            upstream = parse_traceparent(decision.upstream_headers["traceparent"])
            assert upstream is not None and upstream.sampled
            assert (upstream.trace_id, upstream.span_id) == (span.trace_id, span.span_id)
