"""The lean HTTP/1.1 pool: framing, keep-alive reuse, stale connections, limits, header safety."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from mcp_server.http1 import Http1Pool, ResponseTooLarge

Reply = Callable[[bytes], bytes | None]  # request bytes -> raw response (None: close without answering)


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
