"""A resumed stream misses nothing the session sends while it is being replayed.

The SDK's transport replays the stored events of a ``GET`` with ``Last-Event-ID``, sends the
client a new priming event and only then registers the stream for live events; what its message
router stores in between reaches no stream. These tests drive the SDK's own transport (its replay
and its message router, through ``connect()``) with an ASGI ``send`` that holds the connection
at the last replayed event, so the window is open for as long as the test needs.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from mcp.server.streamable_http import EventMessage
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import JSONRPCNotification
from starlette.requests import Request

from mcp_server.events import SessionEvents, SessionEventStores
from mcp_server.resume import ResumableTransport
from tests.harness.mcp_registry import eventually

VERSION = "2025-11-25"  # the first with priming events


def note(n: int) -> Any:
    return JSONRPCNotification(jsonrpc="2.0", method="notifications/message", params={"n": n})


def _request(last_event_id: str, receive: Any) -> Request:
    scope = {"type": "http", "method": "GET", "path": "/mcp", "query_string": b"", "headers": [
        (b"accept", b"text/event-stream"), (b"last-event-id", last_event_id.encode()),
        (b"mcp-protocol-version", VERSION.encode())]}
    return Request(scope, receive)


def _numbers(bodies: list[bytes]) -> list[int]:
    out = []
    for line in b"".join(bodies).decode().splitlines():
        if line.startswith("data: {"):
            out.append(json.loads(line.removeprefix("data: "))["params"]["n"])
    return out


async def _resumable() -> tuple[SessionEventStores, ResumableTransport, SessionEvents, str]:
    """A session's transport, its view of the store, and the priming event of stream ``"1"``."""
    stores = SessionEventStores()
    transport = ResumableTransport(mcp_session_id="s", event_store=stores.session("s"), retry_interval=10)
    events = transport._event_store
    assert isinstance(events, SessionEvents)
    return stores, transport, events, await events.store_event("1", None)


async def _ignore(event: EventMessage) -> None:
    """A replay's send callback that drops what it is given."""


async def test_what_the_session_sends_during_a_replay_reaches_the_resumed_stream_once_in_order() -> None:
    stores, transport, events, prime = await _resumable()
    await events.store_event("1", note(0))

    bodies: list[bytes] = []
    held = anyio.Event()
    release = anyio.Event()
    disconnect = anyio.Event()

    async def send(message: dict[str, Any]) -> None:
        body = message.get("body", b"")
        bodies.append(body)
        if b'"n":0' in body and not held.is_set():
            held.set()  # the replay is done; the SDK now mints a priming event and waits to send it
            await release.wait()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    with anyio.fail_after(10):
        async with transport.connect() as (_read, write), anyio.create_task_group() as tg:
            tg.start_soon(transport._replay_events, prime, _request(prime, receive), send)
            await held.wait()
            stored = len(stores)
            for n in (1, 2):  # a tool's progress while the client is resuming
                await write.send(SessionMessage(note(n), metadata=ServerMessageMetadata(related_request_id="1")))
            await eventually(lambda: len(stores) == stored + 2, within=5, interval=0.005)
            assert "1" not in transport._request_streams  # the window: stored, but no stream to send on
            release.set()
            await eventually(lambda: _numbers(bodies) == [0, 1, 2], within=5, interval=0.005)
            await write.send(SessionMessage(note(3), metadata=ServerMessageMetadata(related_request_id="1")))
            await eventually(lambda: len(_numbers(bodies)) == 4, within=5, interval=0.005)
            disconnect.set()
            tg.cancel_scope.cancel()
    assert _numbers(bodies) == [0, 1, 2, 3]


async def test_what_is_stored_while_a_replay_is_being_sent_is_replayed_too() -> None:
    stores = SessionEventStores()
    events = stores.session("s")
    prime = await events.store_event("1", None)
    await events.store_event("1", note(0))
    got: list[int] = []

    async def send(event: EventMessage) -> None:
        got.append(event.message.params["n"])  # type: ignore[union-attr]
        if len(got) < 3:
            await events.store_event("1", note(len(got)))

    assert await events.replay_events_after(prime, send) == "1"
    assert got == [0, 1, 2]
    assert events.missed_since_replay("1") == []


async def test_the_hand_over_is_once_per_replay_of_that_stream_and_skips_priming_and_other_streams() -> None:
    stores = SessionEventStores()
    events = stores.session("s")
    prime = await events.store_event("1", None)

    assert events.missed_since_replay("1") == []  # no replay, nothing to hand over
    await events.replay_events_after(prime, _ignore)
    await events.store_event("1", None)  # the resumed connection's own priming event
    await events.store_event("2", note(9))
    later = await events.store_event("1", note(1))
    assert [(m.event_id, m.message) for m in events.missed_since_replay("1")] == [(later, note(1))]
    assert events.missed_since_replay("1") == []


async def test_a_stream_already_live_when_replayed_gets_no_hand_over_at_a_later_registration() -> None:
    _, transport, events, prime = await _resumable()
    live = anyio.create_memory_object_stream[EventMessage](16)
    transport._request_streams["1"] = live

    await events.replay_events_after(prime, _ignore)
    assert "1" in transport._request_streams  # what the SDK asks right after the replay: no new stream
    await events.store_event("1", note(1))  # delivered live, on the stream that is there
    later = anyio.create_memory_object_stream[EventMessage](16)
    transport._request_streams["1"] = later
    assert later[1].statistics().current_buffer_used == 0
    for stream in (*live, *later):
        stream.close()


async def test_a_hand_over_larger_than_the_stream_buffer_keeps_the_first_in_order() -> None:
    _, transport, events, prime = await _resumable()

    await events.replay_events_after(prime, _ignore)
    for n in range(5):
        await events.store_event("1", note(n))
    send, recv = anyio.create_memory_object_stream[EventMessage](3)
    transport._request_streams["1"] = (send, recv)
    got = [recv.receive_nowait().message.params["n"] for _ in range(3)]  # type: ignore[union-attr]
    assert got == [0, 1, 2]
    send.close()
    recv.close()
