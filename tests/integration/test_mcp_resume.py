"""Resumable Streamable HTTP and logging/setLevel through the real MCP server (uvicorn, the SDK's
session manager, Link's pipeline) against a real upstream HTTP server.

A call's SSE stream is cut by the server mid-call (``mcp.sse_poll_after_s``) while the upstream is
held; the client reconnects with ``Last-Event-ID`` and gets the result exactly once. Hostile and
stale ``Last-Event-ID`` values are refused 400 and never replay another session's events.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from mcp.client import Client

from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.mcp_sessions import Session, results
from tests.unit.mcp_server.support import settings, tool

pytestmark = pytest.mark.integration


class _Gate(BaseHTTPRequestHandler):
    """``/held`` answers only once the test opens the gate; ``/status/500`` fails; the rest answers ok."""

    protocol_version = "HTTP/1.1"
    server: _GateServer

    def log_message(self, *args: object) -> None:
        return

    def do_GET(self) -> None:
        if self.path.startswith("/held"):
            self.server.entered.set()
            self.server.gate.wait(30)  # bounded: a test that forgets to open the gate still ends
        status = 500 if self.path.startswith("/status/500") else 200
        payload = json.dumps({"path": self.path}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _GateServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Gate)
        self.gate = threading.Event()
        self.entered = threading.Event()


@pytest.fixture
def upstream() -> Iterator[_GateServer]:
    server = _GateServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.gate.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
async def mcp(tmp_path: Path, upstream: _GateServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EmbeddedMcpServer]:
    monkeypatch.setenv("GATE_UPSTREAM", f"http://127.0.0.1:{upstream.server_address[1]}")
    tools_dir = tmp_path / "tools"
    tools_dir.mkdir()
    (tools_dir / "tools.yaml").write_text(yaml.safe_dump_all([
        tool("held", endpoint="${GATE_UPSTREAM}/held", method="GET"),
        tool("quick", endpoint="${GATE_UPSTREAM}/quick", method="GET"),
        tool("broken", endpoint="${GATE_UPSTREAM}/status/500", method="GET"),
    ]))
    s = settings(tmp_path, registry__source="files", registry__path=str(tools_dir), mcp__json_response=False,
                 mcp__sse_poll_after_s=0.05, mcp__event_store_per_session=6, mcp__sse_retry_ms=10)
    async with EmbeddedMcpServer(s) as server:
        assert server.app.extras["registry"].errors() == {}
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20) as client:
        yield client


async def _session(http: httpx.AsyncClient, mcp: EmbeddedMcpServer) -> Session:
    session = Session(http, mcp.url)
    await session.open()
    return session


@pytest.mark.parametrize("release_before_resume", [False, True], ids=["live-tail", "replayed-from-store"])
async def test_a_call_cut_mid_stream_resumes_with_last_event_id_and_its_result_arrives_once(
    mcp: EmbeddedMcpServer, upstream: _GateServer, http: httpx.AsyncClient, release_before_resume: bool
) -> None:
    session = await _session(http, mcp)
    # The upstream holds the call, so the server cuts the stream after the priming event only.
    request_id, cut = await session.call("held")
    assert cut.status == 200
    assert len(cut.events) == 1 and cut.events[0]["data"] == "" and cut.events[0]["retry"] == "10"
    assert results(cut, request_id) == []
    priming = cut.events[0]["id"]
    assert upstream.entered.is_set()
    store = mcp.parts.sessions.events  # type: ignore[attr-defined]
    if release_before_resume:
        stored = len(store)
        upstream.gate.set()
        for _ in range(400):  # bounded: until the result is in the store
            if len(store) > stored:
                break
            await _sleep()
        assert len(store) > stored
    else:
        # Open the gate once the client is back (the live tail of the resumed stream delivers it).
        threading.Timer(0.2, upstream.gate.set).start()
    resumed = await session.resume(priming, request_id)
    assert resumed.status == 200
    answers = results(resumed, request_id)
    assert len(answers) == 1
    assert answers[0]["result"]["isError"] is False
    assert '"/held"' in answers[0]["result"]["content"][0]["text"]
    # Resuming again from the priming event replays the same result once more, never twice.
    again = await session.resume(priming, request_id)
    assert len(results(again, request_id)) == 1


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.01)


HOSTILE_IDS = ["garbage", "0", "-1", "999999999", "1 OR 1=1", "../1", "%00", "1" * 4000, "1,2", "%C3%A9t%C3%A9"]


@pytest.mark.parametrize("last_event_id", HOSTILE_IDS, ids=lambda v: repr(v[:12]))
async def test_a_garbage_last_event_id_is_refused_400_with_a_reason(
    mcp: EmbeddedMcpServer, http: httpx.AsyncClient, last_event_id: str
) -> None:
    session = await _session(http, mcp)
    await session.call("quick")
    refused = await session.resume(last_event_id)
    assert refused.status == 400
    assert refused.events == []
    assert "Last-Event-ID is unknown" in json.loads(refused.body)["error"]["message"]


async def test_another_sessions_event_ids_never_replay_its_events(
    mcp: EmbeddedMcpServer, upstream: _GateServer, http: httpx.AsyncClient
) -> None:
    upstream.gate.set()
    victim = await _session(http, mcp)
    request_id, answered = await victim.call("quick")
    victim_ids = [e["id"] for e in answered.events if "id" in e]
    assert victim_ids and results(answered, request_id)
    attacker = await _session(http, mcp)
    for event_id in victim_ids:
        refused = await attacker.resume(event_id)
        assert refused.status == 400 and refused.events == []
    # The victim itself can still resume from its own first event.
    own = await victim.resume(victim_ids[0], request_id)
    assert own.status == 200 and len(results(own, request_id)) == 1


async def test_the_oldest_events_are_dropped_and_a_too_old_id_is_refused(
    mcp: EmbeddedMcpServer, upstream: _GateServer, http: httpx.AsyncClient
) -> None:
    upstream.gate.set()
    session = await _session(http, mcp)
    first_id, first = await session.call("quick")
    oldest = first.events[0]["id"]
    assert (await session.resume(oldest, first_id)).status == 200
    for _ in range(4):  # 2 events per call; the session keeps 6
        await session.call("quick")
    refused = await session.resume(oldest)
    assert refused.status == 400 and refused.events == []
    last_id, last = await session.call("quick")
    kept = await session.resume(last.events[0]["id"], last_id)
    assert kept.status == 200 and len(results(kept, last_id)) == 1


async def test_set_level_filters_the_notifications_a_session_gets(mcp: EmbeddedMcpServer) -> None:
    received: list[tuple[str, Any]] = []

    async def on_log(params: Any) -> None:
        received.append((params.level, params.data))

    async with Client(mcp.url, mode="legacy", logging_callback=on_log) as client:
        assert client.server_capabilities.logging is not None
        # Default level info: a failing call's warning arrives, a good call's debug entry does not.
        await client.call_tool("broken", {})
        await client.call_tool("quick", {})
        assert received == [("warning", {"tool": "broken", "status": 500, "reason": "upstream_status"})]
        received.clear()
        await client.set_logging_level("error")
        await client.call_tool("broken", {})
        assert received == []
        await client.set_logging_level("debug")
        await client.call_tool("quick", {})
        await client.call_tool("broken", {})
        assert [level for level, _ in received] == ["debug", "warning"]
        assert received[0][1] == {"tool": "quick", "status": 200}
    # Another session starts from the default again (levels are per session).
    received.clear()
    async with Client(mcp.url, mode="legacy", logging_callback=on_log) as other:
        await other.call_tool("quick", {})
        assert received == []
