"""Resumable virtual servers through the real MCP server (uvicorn, the SDK's session manager, Link's
pipeline) federating a real SDK-built upstream: a client of ``/mcp/v/{name}`` that reconnects with
``Last-Event-ID`` gets what it missed (progress notifications and the result, once), from the same
bounded event store as ``/mcp``; an id or a session of another virtual server, another tenant or the
main endpoint replays nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml

from link.registry import ToolRegistry
from mcp_server.embedded import EmbeddedMcpServer
from mcp_server.events import SessionEventStores
from tests.harness.mcp_registry import eventually, toolset_manifest
from tests.harness.mcp_sessions import Session, Sse, results
from tests.harness.mcp_upstreams import sdk_upstream
from tests.unit.mcp_server.support import settings

pytestmark = pytest.mark.integration

PER_SESSION = 8




@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[EmbeddedMcpServer]:
    async with sdk_upstream() as sdk:
        reg = tmp_path / "reg"
        reg.mkdir()
        (reg / "all.yaml").write_text(yaml.safe_dump_all([
            toolset_manifest("support", "tenant-acme", sdk.url, timeout_s=10, serve=True, prefix="sup_",
                     tools=[{"name": "stall"}, {"name": "progress_and_log"}, {"name": "echo"}]),
            toolset_manifest("billing", "tenant-acme", sdk.url, timeout_s=10, serve=True, prefix="bill_", tools=[{"name": "echo"}]),
            toolset_manifest("support", "tenant-beta", sdk.url, timeout_s=10, serve=True, prefix="beta_", tools=[{"name": "echo"}]),
        ]))
        s = settings(tmp_path, registry__source="files", registry__path=str(reg), mcp__json_response=False,
                     mcp__sse_poll_after_s=0.05, mcp__event_store_per_session=PER_SESSION, mcp__sse_retry_ms=10)
        async with EmbeddedMcpServer(s) as server:
            registry: ToolRegistry = server.app.extras["registry"]
            sets_ = [("tenant-acme", "support"), ("tenant-acme", "billing"), ("tenant-beta", "support")]
            await eventually(lambda: all(registry.toolset_status(t, n).connected for t, n in sets_))
            yield server


@pytest.fixture
async def acme() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20, headers={"x-api-key": "key-acme"}) as client:
        yield client


@pytest.fixture
async def beta() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20, headers={"x-api-key": "key-beta"}) as client:
        yield client


async def _open(http: httpx.AsyncClient, server: EmbeddedMcpServer, path: str) -> Session:
    session = Session(http, server.base_url + path)
    await session.open()
    return session


def _store(server: EmbeddedMcpServer) -> SessionEventStores:
    events = server.parts.virtual_sessions.events  # type: ignore[union-attr]
    assert isinstance(events, SessionEventStores)
    return events


def _refused(sse: Sse, status: int) -> bool:
    return sse.status == status and sse.events == []


@pytest.mark.parametrize("finish_before_resume", [False, True], ids=["live-tail", "replayed-from-store"])
async def test_a_call_cut_mid_stream_resumes_on_the_virtual_server_and_its_result_arrives_once(
    gateway: EmbeddedMcpServer, acme: httpx.AsyncClient, finish_before_resume: bool
) -> None:
    session = await _open(acme, gateway, "/mcp/v/support")
    # The upstream sleeps; the server cuts the stream after its priming event.
    request_id, cut = await session.call("sup_stall", {"seconds": 0.6})
    assert cut.status == 200 and results(cut, request_id) == []
    assert len(cut.events) == 1 and cut.events[0]["data"] == "" and cut.events[0]["retry"] == "10"
    priming = cut.events[0]["id"]
    store = _store(gateway)
    if finish_before_resume:
        stored = len(store)
        await eventually(lambda: len(store) > stored)
    resumed = await session.resume(priming, request_id)
    assert resumed.status == 200
    [answer] = results(resumed, request_id)
    assert answer["result"]["isError"] is False and answer["result"]["content"][0]["text"] == "woke"
    again = await session.resume(priming, request_id)
    assert len(results(again, request_id)) == 1


async def test_a_client_that_lost_the_stream_gets_the_progress_it_missed_and_the_result(
    gateway: EmbeddedMcpServer, acme: httpx.AsyncClient
) -> None:
    session = await _open(acme, gateway, "/mcp/v/support")
    request_id, seen = await session.call("sup_progress_and_log", {"steps": 2}, meta={"progressToken": "p-1"})
    first = seen.events[0]["id"]  # the client saw the priming event, then the connection dropped
    resumed = await session.resume(first, request_id)
    progress = [m for m in resumed.messages() if m.get("method") == "notifications/progress"]
    assert [p["params"]["progress"] for p in progress] == [1, 2]
    assert all(p["params"]["progressToken"] == "p-1" for p in progress)
    [answer] = results(resumed, request_id)
    assert answer["result"]["content"][0]["text"] == "done"
    # The replay starts with whatever the first stream carried before it was cut (often nothing).
    assert resumed.messages()[:len(seen.messages())] == seen.messages()


HOSTILE_IDS = ["garbage", "0", "-1", "999999999", "1 OR 1=1", "../1", "%00", "1" * 4000, "1,2"]


@pytest.mark.parametrize("last_event_id", HOSTILE_IDS, ids=lambda v: repr(v[:12]))
async def test_a_garbage_last_event_id_is_refused_400_with_a_reason(
    gateway: EmbeddedMcpServer, acme: httpx.AsyncClient, last_event_id: str
) -> None:
    session = await _open(acme, gateway, "/mcp/v/support")
    await session.call("sup_echo", {"text": "x"})
    refused = await session.resume(last_event_id)
    assert _refused(refused, 400)
    assert "Last-Event-ID is unknown" in json.loads(refused.body)["error"]["message"]


async def test_event_ids_and_sessions_never_cross_servers_tenants_or_the_main_endpoint(
    gateway: EmbeddedMcpServer, acme: httpx.AsyncClient, beta: httpx.AsyncClient
) -> None:
    victim = await _open(acme, gateway, "/mcp/v/support")
    request_id, answered = await victim.call("sup_echo", {"text": "secret"})
    victim_ids = [e["id"] for e in answered.events if "id" in e]
    if not results(answered, request_id):  # the stream was cut before the answer (a slow machine)
        answered = await victim.resume(victim_ids[0], request_id)
        victim_ids += [e["id"] for e in answered.events if "id" in e]
    assert victim_ids and results(answered, request_id)
    # Other sessions that know the ids: another tenant's set of the same name, another of acme's own
    # virtual servers, acme's main endpoint session. None of them holds these events.
    others = [await _open(beta, gateway, "/mcp/v/support"), await _open(acme, gateway, "/mcp/v/billing"),
              await _open(acme, gateway, "/mcp")]
    for other in others:
        for event_id in victim_ids:
            assert _refused(await other.resume(event_id, request_id), 400), other.url
    # The victim's session id itself, presented elsewhere: as unknown as a session that never existed.
    for http, path in ((acme, "/mcp/v/billing"), (beta, "/mcp/v/support"), (acme, "/mcp")):
        thief = Session(http, gateway.base_url + path)
        thief.id = victim.id
        stolen = await thief.resume(victim_ids[0], request_id)  # (a leak would end at the answer)
        assert _refused(stolen, 404), path
        listed = await thief.post({"jsonrpc": "2.0", "id": 9, "method": "tools/list"})
        assert _refused(listed, 404) and "secret" not in listed.body, path
    # The victim still resumes its own stream, once.
    own = await victim.resume(victim_ids[0], request_id)
    assert own.status == 200 and len(results(own, request_id)) == 1


async def test_a_virtual_session_keeps_only_its_newest_events(
    gateway: EmbeddedMcpServer, acme: httpx.AsyncClient
) -> None:
    session = await _open(acme, gateway, "/mcp/v/support")
    first_id, first = await session.call("sup_echo", {"text": "0"})
    oldest = first.events[0]["id"]
    assert (await session.resume(oldest, first_id)).status == 200
    for i in range(PER_SESSION // 2):  # 2 events per call (priming + result)
        await session.call("sup_echo", {"text": str(i)})
    assert _refused(await session.resume(oldest), 400)
    last_id, last = await session.call("sup_echo", {"text": "last"})
    kept = await session.resume(last.events[0]["id"], last_id)
    assert kept.status == 200 and len(results(kept, last_id)) == 1
    assert len(_store(gateway)._sessions[session.id]) <= PER_SESSION
    # Ending the session forgets its events.
    async with acme.stream("DELETE", session.url, headers=session.headers()) as ended:
        assert ended.status_code in (200, 204)
    await eventually(lambda: session.id not in _store(gateway)._sessions)
