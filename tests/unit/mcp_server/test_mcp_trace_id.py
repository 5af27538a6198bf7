"""MCP metering events carry the trace id: the caller's when it sends one, else the decision span's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from link.demo.upstream import DemoUpstream
from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.otlp import OtlpReceiver
from tests.unit.mcp_server.support import RecordingSink, settings

REGISTRY = Path(__file__).resolve().parents[3] / "link" / "demo" / "assets" / "registry"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_mcp_events_carry_the_trace_of_the_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = DemoUpstream().start()
    monkeypatch.setenv("DEMO_UPSTREAM", upstream.url)
    try:
        with OtlpReceiver() as receiver:
            s = settings(tmp_path, registry__source="files", registry__path=str(REGISTRY),
                         tracing__enabled=True, tracing__otlp_endpoint=receiver.address)
            sink = RecordingSink()
            async with EmbeddedMcpServer(s) as mcp:
                mcp.app.add_outcome_sink(sink)
                async with httpx.AsyncClient(base_url=mcp.base_url, timeout=10) as http:
                    untraced = await http.post("/mcp/v1/tools/say-hello", json={"name": "A"})
                    traced = await http.post("/mcp/v1/tools/say-hello", json={"name": "B"},
                                             headers={"traceparent": f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"})
            assert untraced.status_code == traced.status_code == 200
            first, second = sink.outcomes
            assert second.trace_id == CLIENT_TRACE
            # No trace from the caller: the event names the trace Link started for the call.
            assert first.trace_id and first.trace_id != CLIENT_TRACE
            assert await asyncio.to_thread(
                receiver.wait_for, lambda spans: any(sp.trace_id == first.trace_id for sp in spans), 10.0)
    finally:
        upstream.stop()
