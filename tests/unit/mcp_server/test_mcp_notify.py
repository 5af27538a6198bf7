"""list_changed fan-out: coalesced, thread-safe, to handshake connections and 2026-07-28 listen streams."""

from __future__ import annotations

import asyncio
import threading

from mcp.server.subscriptions import InMemorySubscriptionBus, ServerEvent, ToolsListChanged

from link.registry import ToolRegistry
from mcp_server.notify import ListChangedNotifier
from tests.unit.mcp_server.support import tool


class FakeConnection:
    def __init__(self) -> None:
        self.notified = 0

    async def send_tool_list_changed(self) -> None:
        self.notified += 1


async def wait_for(predicate, within: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


async def test_a_burst_of_changes_becomes_one_notification_per_connection_and_stream() -> None:
    registry = ToolRegistry()
    bus = InMemorySubscriptionBus()
    events: list[ServerEvent] = []
    bus.subscribe(events.append)
    notifier = ListChangedNotifier(registry, bus, debounce_s=0.05)
    await notifier.start()
    conn = FakeConnection()
    notifier.track(conn)
    notifier.track(conn)  # tracked once
    for i in range(5):
        registry.apply(tool(f"t{i}"))
    await wait_for(lambda: notifier.sent == 1)
    await asyncio.sleep(0.1)
    assert conn.notified == 1 and events == [ToolsListChanged()]
    await notifier.stop()


async def test_changes_from_a_source_thread_are_delivered_on_the_loop() -> None:
    registry = ToolRegistry()
    notifier = ListChangedNotifier(registry, InMemorySubscriptionBus(), debounce_s=0.01)
    await notifier.start()
    conn = FakeConnection()
    notifier.track(conn)
    t = threading.Thread(target=lambda: registry.apply(tool("from-thread")))
    t.start()
    t.join(5)
    await wait_for(lambda: conn.notified == 1)
    await notifier.stop()
    registry.apply(tool("after-stop"))
    await asyncio.sleep(0.05)
    assert conn.notified == 1


async def test_finished_connections_are_forgotten() -> None:
    notifier = ListChangedNotifier(ToolRegistry(), InMemorySubscriptionBus())
    conn = FakeConnection()
    notifier.track(conn)
    assert notifier.connection_count == 1
    del conn
    import gc

    gc.collect()
    assert notifier.connection_count == 0
