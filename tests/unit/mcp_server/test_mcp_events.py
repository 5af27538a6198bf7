"""The per-session event store: bounds per session, in total and in age; no cross-session replay."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.server.streamable_http import GET_STREAM_KEY, EventMessage
from mcp_types import JSONRPCNotification

from mcp_server.events import SessionEventStores


def note(n: int) -> Any:
    return JSONRPCNotification(jsonrpc="2.0", method="notifications/message", params={"n": n})


async def replay(store: SessionEventStores, session: str, last: str) -> tuple[str | None, list[int]]:
    got: list[int] = []

    async def send(event: EventMessage) -> None:
        got.append(event.message.params["n"])  # type: ignore[union-attr]

    stream = await store.session(session).replay_events_after(last, send)
    return stream, got


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_replay_sends_the_later_events_of_the_same_stream_only() -> None:
    store = SessionEventStores()
    a = store.session("a")
    prime = await a.store_event("1", None)
    await a.store_event("2", note(99))  # another request's stream
    for n in range(3):
        await a.store_event("1", note(n))
    assert await replay(store, "a", prime) == ("1", [0, 1, 2])


async def test_per_session_bound_drops_the_oldest_and_refuses_their_ids() -> None:
    store = SessionEventStores(per_session=3)
    a = store.session("a")
    ids = [await a.store_event("1", note(n)) for n in range(5)]
    assert await replay(store, "a", ids[0]) == (None, [])
    assert await replay(store, "a", ids[1]) == (None, [])
    assert await replay(store, "a", ids[2]) == ("1", [3, 4])


async def test_total_bound_drops_the_oldest_of_any_session() -> None:
    store = SessionEventStores(per_session=10, total=4)
    a, b = store.session("a"), store.session("b")
    first = await a.store_event("1", note(0))
    for n in range(4):
        await b.store_event("1", note(n))
    assert len(store) == 4 and not store.knows("a", first)


async def test_expired_events_are_gone() -> None:
    clock = Clock()
    store = SessionEventStores(ttl_s=10, clock=clock)
    a = store.session("a")
    old = await a.store_event("1", note(0))
    clock.now = 5
    newer = await a.store_event("1", note(1))
    clock.now = 11
    assert await replay(store, "a", old) == (None, [])
    assert store.knows("a", newer)


@pytest.mark.parametrize("last", ["", "x", "-1", "0", "10**9", "1" * 1000])
async def test_unknown_ids_replay_nothing(last: str) -> None:
    store = SessionEventStores()
    await store.session("a").store_event("1", note(0))
    assert await replay(store, "a", last) == (None, [])


async def test_one_sessions_ids_never_replay_in_another_and_forget_clears() -> None:
    store = SessionEventStores()
    a = store.session("a")
    prime = await a.store_event("1", None)
    await a.store_event("1", note(0))
    assert await replay(store, "b", prime) == (None, [])
    store.forget("a")
    assert len(store) == 0 and not store.knows("a", prime)


async def test_json_answered_posts_are_not_stored_but_the_get_stream_is() -> None:
    store = SessionEventStores(json_posts=True)
    a = store.session("a")
    assert await a.store_event("1", note(1)) == ""  # a POST's JSON answer: nothing to resume
    assert len(store) == 0
    first = await a.store_event(GET_STREAM_KEY, note(2))
    await a.store_event(GET_STREAM_KEY, note(3))
    assert len(store) == 2
    assert await replay(store, "a", first) == (GET_STREAM_KEY, [3])
