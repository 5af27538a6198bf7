"""The HTTP decision server under hostile and unusual input, over real loopback sockets.

A stub decision (it echoes what it parsed) stands in for the pipeline: what is tested is the
connection handling: bounds, keep-alive, pipelining, resets, drain.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httptools
import pytest
import uvloop

from link.httpauthz.protocol import Check, Limits, ServerState, protocol_factory
from link.httpauthz.wire import client_status, wire_status

LIMITS = Limits(max_header_bytes=4_096, max_body_bytes=1_024, header_timeout_s=0.3, idle_timeout_s=30.0)
WAIT = 5.0  # bound on every read: a hang fails the test instead of blocking the suite


@pytest.fixture(params=["asyncio", "uvloop"], scope="module")
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every case on asyncio's loop and on uvloop's (what `stoa-link serve` runs)."""
    return uvloop.EventLoopPolicy() if request.param == "uvloop" else asyncio.DefaultEventLoopPolicy()


@dataclass
class Stub:
    """The decision callback: answers with what it parsed; can be held to keep a check in flight."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    hold: bool = False
    fail: bool = False
    seen: list[Check] = field(default_factory=list)

    async def __call__(self, check: Check) -> bytes:
        self.seen.append(check)
        if self.hold:
            await self.release.wait()
        if self.fail:
            raise RuntimeError("bug in the shell")
        body = json.dumps({"method": check.method, "target": check.target, "body": len(check.body or b""),
                           "headers": check.headers}).encode()
        return (b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body)) + body


@dataclass
class Server:
    state: ServerState
    stub: Stub
    port: int


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    stub = Stub()
    state = ServerState(stub, LIMITS, max_connections=4)
    srv = await asyncio.get_running_loop().create_server(protocol_factory(state), "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield Server(state, stub, port)
    finally:
        stub.release.set()
        srv.close()
        for conn in list(state.connections):
            conn.abort()
        await srv.wait_closed()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class _Collector:
    def __init__(self) -> None:
        self.parser: httptools.HttpResponseParser | None = None
        self.status = 0
        self.done: list[Response] = []
        self._headers: dict[str, str] = {}
        self._body = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode().lower()] = value.decode()

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.done.append(Response(self.status, self._headers, self._body))
        self._headers, self._body = {}, b""


async def read_responses(reader: asyncio.StreamReader, count: int) -> list[Response]:
    """Read ``count`` whole responses (bounded wait)."""
    collector = _Collector()
    parser = httptools.HttpResponseParser(collector)
    collector.parser = parser
    while len(collector.done) < count:
        data = await asyncio.wait_for(reader.read(65_536), WAIT)
        if not data:
            break
        parser.feed_data(data)
    return collector.done


async def closed(reader: asyncio.StreamReader) -> bool:
    """True when the server closed the connection (EOF or reset) within the bound."""
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65_536), WAIT)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def check(target: str = "/check/orders/1", extra: bytes = b"", body: bytes = b"", method: bytes = b"GET") -> bytes:
    length = b"content-length: %d\r\n" % len(body) if body else b""
    return (method + b" " + target.encode() + b" HTTP/1.1\r\nhost: api.example\r\n" + length + extra + b"\r\n"
            + body)


async def test_keep_alive_serves_several_checks_on_one_connection(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for i in range(3):
        writer.write(check(f"/check/orders/{i}?q=1"))
        (r,) = await read_responses(reader, 1)
        assert r.status == 200
        assert json.loads(r.body)["target"] == f"/check/orders/{i}?q=1"
    assert len(server.state.connections) == 1
    writer.close()


async def test_pipelined_checks_are_answered_in_order(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"".join(check(f"/check/p/{i}") for i in range(12)))  # more than the queue bound
    responses = await read_responses(reader, 12)
    assert [json.loads(r.body)["target"] for r in responses] == [f"/check/p/{i}" for i in range(12)]
    writer.close()


async def test_headers_are_lower_cased_and_repeats_joined(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(check(extra=b"X-Thing: a\r\nx-thing: b\r\nContent-Type: application/json\r\n"))
    (r,) = await read_responses(reader, 1)
    headers = json.loads(r.body)["headers"]
    assert headers["x-thing"] == "a,b" and headers["content-type"] == "application/json"
    writer.close()


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET /check/x HTTP/1.1\r\nhost: a\r\nno colon here\r\n\r\n",
    b"GET /check/x HTTP/1.1\r\nhost: a\r\nbad\x00name: v\r\n\r\n",
    b"GET /check/x HTTP/1.1\r\nhost: a\r\nx: v\r\n\x01\r\n\r\n",
    b"GET /check/\x7fx HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32,  # a TLS ClientHello
    b"POST /check/x HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nZZ\r\nxx\r\n0\r\n\r\n",
    b"POST /check/x HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ncontent-length: 7\r\n\r\nhello",
    b"POST /check/x HTTP/1.1\r\nhost: a\r\ncontent-length: -1\r\n\r\n",
    b"GET /check/x HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
], ids=["request-line", "header-no-colon", "nul-in-name", "control-char-line", "del-in-target", "tls-hello",
        "bad-chunk-size", "conflicting-content-length", "negative-content-length", "upgrade"])
async def test_malformed_requests_get_400_and_close_and_the_server_lives_on(server: Server, raw: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(raw)
    (r,) = await read_responses(reader, 1)
    assert r.status == 400
    assert await closed(reader)
    assert server.stub.seen == []  # nothing malformed reached the decision
    reader2, writer2 = await asyncio.open_connection("127.0.0.1", server.port)
    writer2.write(check())
    assert (await read_responses(reader2, 1))[0].status == 200
    writer.close()
    writer2.close()


@pytest.mark.parametrize("raw", [
    check(extra=b"x-big: " + b"a" * 8_000 + b"\r\n"),
    check(extra=b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 40) for i in range(200))),
    check(target="/check/" + "a" * 8_000),
], ids=["one-huge-header", "many-headers", "huge-target"])
async def test_oversized_headers_get_431(server: Server, raw: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(raw)
    (r,) = await read_responses(reader, 1)
    assert r.status == 431
    assert await closed(reader)
    writer.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("size", "status"), [(1_023, 200), (1_024, 200), (1_025, 413)],
                         ids=["under", "at", "over"])
async def test_body_bound(server: Server, size: int, status: int, chunked: bool) -> None:
    body = b"x" * size
    if chunked:
        raw = (b"POST /check/b HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
               + b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 300]), body[i:i + 300]) for i in range(0, size, 300))
               + b"0\r\n\r\n")
    else:
        raw = check("/check/b", body=body, method=b"POST")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(raw)
    (r,) = await read_responses(reader, 1)
    assert r.status == status
    if status == 200:
        assert json.loads(r.body)["body"] == size
    writer.close()


async def test_slowloris_headers_are_cut_off_with_408(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /check/slow HTTP/1.1\r\nhost: a\r\n")  # and never the blank line
    for _ in range(3):
        await asyncio.sleep(0.05)
        writer.write(b"x-drip: 1\r\n")  # dripping bytes does not extend the deadline
    (r,) = await read_responses(reader, 1)
    assert r.status == 408
    assert await closed(reader)
    assert server.stub.seen == []


async def test_paths_outside_the_check_prefix_are_not_checks(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(check("/checkout") + check("/healthz") + check("/check"))
    not_check, health, root = await read_responses(reader, 3)
    assert not_check.status == 404 and health.status == 200 and health.body == b"ok"
    assert root.status == 200 and [c.target for c in server.stub.seen] == ["/check"]
    writer.close()


def _reset(port: int, data: bytes) -> None:
    """Send ``data`` and close with RST (SO_LINGER 0): a peer vanishing mid-request."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(data)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


async def test_connection_reset_mid_request_and_mid_decision(server: Server) -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, _reset, server.port, b"POST /check/x HTTP/1.1\r\ncontent-length: 100\r\n\r\nab")
    server.stub.hold = True
    await loop.run_in_executor(None, _reset, server.port, check("/check/in-flight"))
    for _ in range(100):  # bounded: the held decision is reached
        if server.stub.seen:
            break
        await asyncio.sleep(0.01)
    assert [c.target for c in server.stub.seen] == ["/check/in-flight"]
    server.stub.release.set()  # the decision finishes after its connection is gone: dropped quietly
    server.stub.hold = False
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(check("/check/after"))
    assert (await read_responses(reader, 1))[0].status == 200
    writer.close()


async def test_a_failing_decision_is_a_refusal_not_a_crash(server: Server) -> None:
    """A bug past the pipeline is still Link's refusal: the reserved status (500 to the client), never
    a real 5xx that Envoy would take for an outage and let through when failing open."""
    server.stub.fail = True
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(check())
    (r,) = await read_responses(reader, 1)
    assert r.status == wire_status(500) and client_status(r.status) == 500
    assert json.loads(r.body)["error"] == "internal_error"
    assert await closed(reader)
    writer.close()


async def test_connections_beyond_the_bound_are_closed(server: Server) -> None:
    opened = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(4)]
    for reader, writer in opened:  # every allowed connection works
        writer.write(check())
        assert (await read_responses(reader, 1))[0].status == 200
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await closed(reader)
    assert server.state.rejected == 1
    for _, w in [*opened, (reader, writer)]:
        w.close()


async def test_drain_finishes_the_check_in_flight_then_closes(server: Server) -> None:
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
    idle_writer.write(check("/check/first"))
    await read_responses(idle_reader, 1)
    server.stub.hold = True
    busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", server.port)
    busy_writer.write(check("/check/in-flight"))
    for _ in range(100):
        if len(server.stub.seen) == 2:
            break
        await asyncio.sleep(0.01)
    all_closed = server.state.drain()
    assert await closed(idle_reader)  # idle: closed at once
    assert not all_closed.is_set()
    server.stub.release.set()
    (r,) = await read_responses(busy_reader, 1)  # in flight: answered, then closed
    assert r.status == 200 and json.loads(r.body)["target"] == "/check/in-flight"
    assert await closed(busy_reader)
    await asyncio.wait_for(all_closed.wait(), WAIT)
    idle_writer.close()
    busy_writer.close()


async def test_health_says_draining(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(check("/healthz"))
    assert (await read_responses(reader, 1))[0].status == 200
    server.state.draining = True  # what drain() sets, seen by a connection still open
    writer.write(check("/healthz"))
    (r,) = await read_responses(reader, 1)
    assert r.status == 503 and r.body == b"draining"
    writer.close()


async def test_each_keep_alive_check_gets_the_whole_header_bound_from_its_own_start(server: Server) -> None:
    """The connection's timer is set once and moved, not remade per check: a timer left from earlier
    checks must neither cut a later request short nor let it run past its own bound."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for _ in range(4):  # checks spread over longer than one header bound (0.3 s)
        writer.write(check())
        assert (await read_responses(reader, 1))[0].status == 200
        await asyncio.sleep(0.1)
    started = loop.time()
    writer.write(b"GET /check/slow HTTP/1.1\r\nhost: a\r\n")  # and never the blank line
    (r,) = await read_responses(reader, 1)
    elapsed = loop.time() - started
    assert r.status == 408
    assert LIMITS.header_timeout_s - 0.05 <= elapsed < LIMITS.header_timeout_s + 2.0
    assert await closed(reader)


async def test_an_idle_keep_alive_connection_closes_only_once_idle_for_the_whole_bound() -> None:
    limits = Limits(header_timeout_s=0.2, idle_timeout_s=0.5)
    state = ServerState(Stub(), limits, max_connections=4)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(protocol_factory(state), "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.sockets[0].getsockname()[1])
        for _ in range(6):  # busy for 1.2 s, never idle for 0.5 s: stays open
            writer.write(check())
            assert (await read_responses(reader, 1))[0].status == 200
            await asyncio.sleep(0.2)
        last = loop.time()
        assert await closed(reader)
        idle = loop.time() - last
        assert limits.idle_timeout_s - 0.25 <= idle < limits.idle_timeout_s + 2.0  # 0.2 s already slept
        assert not state.connections
        writer.close()
    finally:
        srv.close()
        await srv.wait_closed()
