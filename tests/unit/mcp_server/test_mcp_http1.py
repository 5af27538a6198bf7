"""The lean HTTP/1.1 pool, through its real path against asyncio loopback servers.

Framing (Content-Length, chunked, close-delimited, HEAD, interim 1xx), keep-alive reuse, idle
expiry, connections the server closed, the per-host cap and its bounded queue, malformed answers,
limits and header safety.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from mcp_server.http1 import Http1Pool, PoolFull, ResponseTooLarge

# request bytes -> raw response (None: close without answering); may be a coroutine function
Reply = Callable[[bytes], bytes | None] | Callable[[bytes], Awaitable[bytes | None]]


class ScriptedServer:
    """A raw TCP server answering each request with ``reply(request)``; counts connections."""

    def __init__(self, reply: Reply, close_after: bool = False) -> None:
        self.reply = reply
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append(head + body)
                answer = self.reply(head + body)
                if asyncio.iscoroutine(answer):
                    answer = await answer
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[ScriptedServer], asyncio.Future[str]]]:
    servers: list[asyncio.Server] = []

    async def start(script: ScriptedServer) -> str:
        server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start  # type: ignore[misc]
    for s in servers:
        s.close()


def ok(body: bytes, ctype: bytes = b"application/json") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: " + ctype + b"\r\ncontent-length: " + str(len(body)).encode() + \
        b"\r\n\r\n" + body


async def test_requests_are_framed_and_connections_reused(serve) -> None:  # type: ignore[no-untyped-def]
    script = ScriptedServer(lambda req: ok(b'{"n":1}'))
    base = await serve(script)
    pool = Http1Pool()
    for _ in range(3):
        resp = await pool.exchange("POST", base + "/x/y?a=1", {"x-one": "1"}, b'{"k":2}')
        assert resp.status == 200 and resp.body == b'{"n":1}' and resp.header(b"content-type") == "application/json"
    assert script.connections == 1
    first = script.requests[0]
    assert first.startswith(b"POST /x/y?a=1 HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:" in first and b"\r\nx-one: 1\r\n" in first
    assert b"\r\ncontent-length: 7\r\n" in first and first.endswith(b'{"k":2}')
    pool.close()


async def test_chunked_and_close_delimited_answers(serve) -> None:  # type: ignore[no-untyped-def]
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    base = await serve(ScriptedServer(lambda req: chunked))
    pool = Http1Pool()
    assert (await pool.exchange("GET", base + "/", {}, b"")).body == b"abcde"
    until_close = ScriptedServer(lambda req: b"HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\nnot here",
                                 close_after=True)
    base2 = await serve(until_close)
    resp = await pool.exchange("GET", base2 + "/", {}, b"")
    assert resp.status == 404 and resp.body == b"not here"
    resp = await pool.exchange("GET", base2 + "/", {}, b"")  # the closed connection is not reused
    assert until_close.connections == 2
    pool.close()


async def test_an_idle_connection_closed_by_the_server_is_replaced_once(serve) -> None:  # type: ignore[no-untyped-def]
    script = ScriptedServer(lambda req: ok(b"{}"))
    base = await serve(script)
    pool = Http1Pool()
    await pool.exchange("GET", base + "/", {}, b"")
    script.writers[0].close()  # the server drops the idle keep-alive connection
    await asyncio.sleep(0.05)
    resp = await pool.exchange("GET", base + "/", {}, b"")
    assert resp.status == 200 and script.connections == 2
    pool.close()


async def test_a_server_that_hangs_up_without_answering_is_an_error(serve) -> None:  # type: ignore[no-untyped-def]
    base = await serve(ScriptedServer(lambda req: None))
    with pytest.raises(httpx.RemoteProtocolError):
        await Http1Pool().exchange("GET", base + "/", {}, b"")


async def test_refused_connections_and_oversized_answers(serve) -> None:  # type: ignore[no-untyped-def]
    from tests.harness.procs import free_port

    with pytest.raises(httpx.ConnectError):
        await Http1Pool().exchange("GET", f"http://127.0.0.1:{free_port()}/", {}, b"")
    base = await serve(ScriptedServer(lambda req: ok(b"x" * 5000)))
    with pytest.raises(ResponseTooLarge):
        await Http1Pool(max_response_bytes=1000).exchange("GET", base + "/", {}, b"")


async def test_control_characters_in_headers_never_reach_the_wire(serve) -> None:  # type: ignore[no-untyped-def]
    script = ScriptedServer(lambda req: ok(b"{}"))
    base = await serve(script)
    with pytest.raises(httpx.LocalProtocolError):
        await Http1Pool().exchange("GET", base + "/", {"x-stoa-subject": "evil\r\nx-admin: yes"}, b"")
    assert script.requests == []


async def test_only_plain_http_urls() -> None:
    with pytest.raises(ValueError, match="not a plain http URL"):
        await Http1Pool().exchange("GET", "https://example.com/", {}, b"")


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for something the event loop will do soon."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within 2 s: {what}")


async def test_an_idle_connection_past_its_expiry_is_closed_not_reused(serve) -> None:  # type: ignore[no-untyped-def]
    script = ScriptedServer(lambda req: ok(b"{}"))
    base = await serve(script)
    pool = Http1Pool(idle_timeout_s=0.05)
    await pool.exchange("GET", base + "/", {}, b"")
    assert pool.open_connections("127.0.0.1", port_of(base)) == 1
    # The pool closes it itself: the server sees the connection end (its handler returns).
    await until(lambda: pool.open_connections("127.0.0.1", port_of(base)) == 0, "the idle connection expires")
    await until(lambda: script.writers[0].is_closing(), "the server sees the close")
    await pool.exchange("GET", base + "/", {}, b"")
    assert script.connections == 2
    pool.close()


async def test_a_connection_within_its_expiry_is_reused(serve) -> None:  # type: ignore[no-untyped-def]
    script = ScriptedServer(lambda req: ok(b"{}"))
    base = await serve(script)
    pool = Http1Pool(idle_timeout_s=30)
    for _ in range(4):
        await pool.exchange("GET", base + "/", {}, b"")
        await asyncio.sleep(0.02)
    assert script.connections == 1 and len(script.requests) == 4
    pool.close()


async def test_a_connection_the_server_closed_is_forgotten_before_reuse(serve) -> None:  # type: ignore[no-untyped-def]
    script = ScriptedServer(lambda req: ok(b"{}"))
    base = await serve(script)
    pool = Http1Pool()
    await pool.exchange("GET", base + "/", {}, b"")
    script.writers[0].close()
    # Seen by the pool as soon as the loop delivers the close, not when the next request fails.
    await until(lambda: pool.open_connections("127.0.0.1", port_of(base)) == 0, "the close is noticed")
    resp = await pool.exchange("GET", base + "/", {}, b"")
    assert resp.status == 200 and script.connections == 2 and len(script.requests) == 2
    pool.close()


async def test_bytes_on_an_idle_connection_retire_it(serve) -> None:  # type: ignore[no-untyped-def]
    script = ScriptedServer(lambda req: ok(b'{"n":1}'))
    base = await serve(script)
    pool = Http1Pool()
    await pool.exchange("GET", base + "/", {}, b"")
    # The server speaks out of turn (as some do before closing an idle connection).
    script.writers[0].write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")
    await until(lambda: pool.open_connections("127.0.0.1", port_of(base)) == 0, "the connection is retired")
    resp = await pool.exchange("GET", base + "/", {}, b"")
    assert resp.status == 200 and resp.body == b'{"n":1}' and script.connections == 2
    pool.close()


class HeldServer(ScriptedServer):
    """Answers only when released; records how many requests are in its hands at once."""

    def __init__(self) -> None:
        super().__init__(self._answer)
        self.release = asyncio.Event()
        self.in_hand = 0
        self.most_in_hand = 0

    async def _answer(self, req: bytes) -> bytes:
        self.in_hand += 1
        self.most_in_hand = max(self.most_in_hand, self.in_hand)
        await self.release.wait()
        self.in_hand -= 1
        return ok(b"{}")


async def test_the_per_host_cap_queues_requests_over_it(serve) -> None:  # type: ignore[no-untyped-def]
    script = HeldServer()
    base = await serve(script)
    pool = Http1Pool(max_per_host=2)
    calls = [asyncio.create_task(pool.exchange("GET", base + f"/{i}", {}, b"")) for i in range(6)]
    await until(lambda: script.in_hand == 2, "two requests reach the server")
    await asyncio.sleep(0.05)  # room for a third connection, if the cap let one through
    assert script.connections == 2 and pool.open_connections("127.0.0.1", port_of(base)) == 2
    script.release.set()
    answers = await asyncio.wait_for(asyncio.gather(*calls), 5)
    assert [a.status for a in answers] == [200] * 6
    assert script.connections == 2 and script.most_in_hand == 2 and len(script.requests) == 6
    pool.close()


async def test_the_queue_for_a_host_is_bounded(serve) -> None:  # type: ignore[no-untyped-def]
    script = HeldServer()
    base = await serve(script)
    pool = Http1Pool(max_per_host=1, max_waiters_per_host=2)
    calls = [asyncio.create_task(pool.exchange("GET", base + "/", {}, b"")) for _ in range(3)]
    await until(lambda: script.in_hand == 1, "the first request reaches the server")
    with pytest.raises(PoolFull):
        await asyncio.wait_for(pool.exchange("GET", base + "/", {}, b""), 2)
    script.release.set()
    assert [a.status for a in await asyncio.wait_for(asyncio.gather(*calls), 5)] == [200] * 3
    pool.close()


async def test_a_cancelled_waiter_does_not_hold_a_place(serve) -> None:  # type: ignore[no-untyped-def]
    script = HeldServer()
    base = await serve(script)
    pool = Http1Pool(max_per_host=1, max_waiters_per_host=1)
    first = asyncio.create_task(pool.exchange("GET", base + "/", {}, b""))
    await until(lambda: script.in_hand == 1, "the first request reaches the server")
    waiting = asyncio.create_task(pool.exchange("GET", base + "/", {}, b""))
    await asyncio.sleep(0.02)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    second = asyncio.create_task(pool.exchange("GET", base + "/", {}, b""))  # the place is free again
    await asyncio.sleep(0.02)
    script.release.set()
    assert (await asyncio.wait_for(first, 5)).status == 200
    assert (await asyncio.wait_for(second, 5)).status == 200
    assert pool.open_connections("127.0.0.1", port_of(base)) == 1
    pool.close()


async def test_a_waiter_cancelled_just_after_its_turn_came_passes_the_turn_on(serve) -> None:  # type: ignore[no-untyped-def]
    script = HeldServer()
    base = await serve(script)
    pool = Http1Pool(max_per_host=1, idle_timeout_s=60)  # no expiry to wake the last waiter instead
    waiters: list[asyncio.Task[object]] = []

    async def first() -> int:
        resp = await pool.exchange("GET", base + "/", {}, b"")
        # Same step as the release that woke the next waiter: it is cancelled before it runs.
        waiters[0].cancel()
        return resp.status

    holder = asyncio.create_task(first())
    await until(lambda: script.in_hand == 1, "the first request reaches the server")
    waiters.extend(asyncio.create_task(pool.exchange("GET", base + "/", {}, b"")) for _ in range(2))
    await asyncio.sleep(0.02)
    script.release.set()
    assert await asyncio.wait_for(holder, 5) == 200
    with pytest.raises(asyncio.CancelledError):
        await waiters[0]
    assert (await asyncio.wait_for(waiters[1], 5)).status == 200  # type: ignore[attr-defined]
    pool.close()


async def test_a_cap_slot_is_returned_when_the_connection_fails(serve) -> None:  # type: ignore[no-untyped-def]
    base = await serve(ScriptedServer(lambda req: None if b"GET /drop" in req else ok(b"{}")))
    pool = Http1Pool(max_per_host=1)
    for _ in range(3):
        with pytest.raises(httpx.RemoteProtocolError):
            await asyncio.wait_for(pool.exchange("GET", base + "/drop", {}, b""), 5)
    assert (await asyncio.wait_for(pool.exchange("GET", base + "/ok", {}, b""), 5)).status == 200
    pool.close()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\n",
], ids=["content-length", "chunked", "404"])
async def test_a_head_answer_has_no_body_and_the_connection_stays_usable(serve, answer: bytes) -> None:  # type: ignore[no-untyped-def]
    script = ScriptedServer(lambda req: answer if req.startswith(b"HEAD ") else ok(b'{"after":"head"}'))
    base = await serve(script)
    pool = Http1Pool()
    head = await asyncio.wait_for(pool.exchange("HEAD", base + "/", {}, b""), 5)
    assert head.body == b"" and head.status == int(answer.split(b" ")[1])
    after = await asyncio.wait_for(pool.exchange("GET", base + "/", {}, b""), 5)
    assert after.body == b'{"after":"head"}' and script.connections == 1
    again = await asyncio.wait_for(pool.exchange("HEAD", base + "/", {}, b""), 5)
    assert again.body == b"" and script.connections == 1
    pool.close()


async def test_a_body_sent_after_a_head_answer_retires_the_connection(serve) -> None:  # type: ignore[no-untyped-def]
    script = ScriptedServer(lambda req: b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello" if req.startswith(b"HEAD ")
                            else ok(b"{}"))
    base = await serve(script)
    pool = Http1Pool()
    assert (await asyncio.wait_for(pool.exchange("HEAD", base + "/", {}, b""), 5)).body == b""
    await until(lambda: pool.open_connections("127.0.0.1", port_of(base)) == 0, "the connection is retired")
    assert (await asyncio.wait_for(pool.exchange("GET", base + "/", {}, b""), 5)).body == b"{}"
    assert script.connections == 2
    pool.close()


INTERIM = [
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.js>; rel=preload\r\n\r\n",
]


@pytest.mark.parametrize("interim", INTERIM, ids=["100", "103", "100+103"])
async def test_interim_answers_are_skipped(serve, interim: bytes) -> None:  # type: ignore[no-untyped-def]
    final = b"HTTP/1.1 201 Created\r\nx-final: yes\r\ncontent-length: 4\r\n\r\ndone"
    script = ScriptedServer(lambda req: interim + final)
    base = await serve(script)
    pool = Http1Pool()
    for _ in range(2):  # and the connection is still in step afterwards
        resp = await asyncio.wait_for(pool.exchange("POST", base + "/", {}, b"{}"), 5)
        assert resp.status == 201 and resp.body == b"done"
        assert resp.header(b"x-final") == "yes" and resp.header(b"link") == ""
    assert script.connections == 1
    pool.close()


async def test_interim_and_final_answers_split_across_packets(serve) -> None:  # type: ignore[no-untyped-def]
    whole = INTERIM[2] + b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"

    class ByteByByte(ScriptedServer):
        async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            await reader.readuntil(b"\r\n\r\n")
            for i in range(len(whole)):
                writer.write(whole[i:i + 1])
                await writer.drain()
            await reader.read()  # until the client closes
            writer.close()

    base = await serve(ByteByByte(lambda req: None))
    pool = Http1Pool()
    resp = await asyncio.wait_for(pool.exchange("GET", base + "/", {}, b""), 5)
    assert resp.status == 200 and resp.body == b"abcd"
    pool.close()


async def test_chunked_and_content_length_answers_share_one_connection(serve) -> None:  # type: ignore[no-untyped-def]
    answers = [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n3\r\nbcd\r\n0\r\n\r\n",
               ok(b"efg"), b"HTTP/1.1 204 No Content\r\n\r\n",
               b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ok(b"")]
    queue = list(answers)
    script = ScriptedServer(lambda req: queue.pop(0))
    base = await serve(script)
    pool = Http1Pool()
    bodies = [(await asyncio.wait_for(pool.exchange("GET", base + "/", {}, b""), 5)).body for _ in answers]
    assert bodies == [b"abcd", b"efg", b"", b"", b""] and script.connections == 1
    pool.close()


GARBAGE = {
    "not-http": b"garbage\r\n\r\n",
    "bad-status": b"HTTP/1.1 abc OK\r\ncontent-length: 0\r\n\r\n",
    "bad-version": b"HTTP/9 200 OK\r\n\r\n",
    "bad-content-length": b"HTTP/1.1 200 OK\r\ncontent-length: twelve\r\n\r\n",
    "two-content-lengths": b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
    "header-without-colon": b"HTTP/1.1 200 OK\r\nno colon here\r\ncontent-length: 0\r\n\r\n",
    "nul-in-header": b"HTTP/1.1 200 OK\r\nx-a: a\x00b\r\ncontent-length: 0\r\n\r\n",
    "switching-protocols": b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    "upgrade": b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
}


@pytest.mark.parametrize("answer", list(GARBAGE.values()), ids=list(GARBAGE))
async def test_a_malformed_answer_is_a_clean_protocol_error(serve, answer: bytes) -> None:  # type: ignore[no-untyped-def]
    script = ScriptedServer(lambda req: answer if b"GET /bad" in req else ok(b"{}"))
    base = await serve(script)
    pool = Http1Pool()
    with pytest.raises(httpx.RemoteProtocolError):
        await asyncio.wait_for(pool.exchange("GET", base + "/bad", {}, b""), 5)
    # The broken connection is gone; the next request gets a fresh one and a clean answer.
    assert pool.open_connections("127.0.0.1", port_of(base)) == 0
    assert (await asyncio.wait_for(pool.exchange("GET", base + "/ok", {}, b""), 5)).body == b"{}"
    assert script.connections == 2
    pool.close()
