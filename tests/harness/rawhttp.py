"""HTTP clients that write requests byte for byte: no library normalizes a path or a header for us.

``http1``/``http2`` send one request and read the answer. :class:`RawExchange` (async) is for requests a
well-behaved client cannot send: lying ``content-length``, chunked bodies that stop half-way, bodies sent
slowly. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def _pairs(headers: Headers | None) -> list[tuple[str, str]]:
    """Header pairs in order; a list may repeat a name, which a dict cannot."""
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


@dataclass
class Answer:
    status: int  # HTTP/2 only: 0 the stream was reset, -1 the connection was closed
    headers: dict[str, str]
    body: bytes


def http1(port: int, target: str, headers: Headers | None = None, method: str = "GET",
          body: bytes = b"", version: str = "HTTP/1.1") -> Answer:
    """One request written as raw bytes; the whole answer read until Envoy closes the connection."""
    lines = [f"{method} {target} {version}"]
    if version == "HTTP/1.1":
        lines.append("Host: link.test")
    lines += [f"{k}: {v}" for k, v in _pairs(headers)]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data, f"no answer at all to {target!r}"
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    if parsed.get("transfer-encoding") == "chunked":
        payload = _dechunk(payload)
    return Answer(int(status_line.split()[1]), parsed, payload)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out


def http2(port: int, path: str, headers: Headers | None = None) -> Answer:
    """One HTTP/2 request with prior knowledge (h2c); ``:path`` is sent exactly as given."""
    config = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                       validate_outbound_headers=False, normalize_outbound_headers=False,
                                       validate_inbound_headers=False)
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    request = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"link.test"),
               (b":path", path.encode("latin-1"))]
    request += [(k.encode(), v.encode()) for k, v in _pairs(headers)]
    conn.send_headers(1, request, end_stream=True)
    status, got, body = -1, {}, b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        done = False
        while not done:
            chunk = sock.recv(65536)
            if not chunk:
                break
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    got = {k.decode(): v.decode() for k, v in event.headers}
                    status = int(got[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    done, status = True, max(status, 0)
                elif isinstance(event, h2.events.StreamEnded):
                    done = True
            sock.sendall(conn.data_to_send())
    assert done or status == -1, f"HTTP/2 stream for {path!r} neither ended nor was reset"
    return Answer(status, got, body)



@dataclass
class RawResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


class RawExchange:
    """``async with RawExchange(port) as x: await x.send(...); r = await x.response()``"""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout_s: float = 10.0) -> None:
        self._addr = (host, port)
        self._timeout = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawExchange:
        self._reader, self._writer = await asyncio.wait_for(asyncio.open_connection(*self._addr), self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            # A server that stopped reading may reset the connection: that is its right.
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(self._writer.wait_closed(), self._timeout)

    async def head(self, method: str, path: str, headers: dict[str, str]) -> None:
        """Send the request line and headers (``host`` and ``connection: close`` added)."""
        lines = [f"{method} {path} HTTP/1.1", f"host: {self._addr[0]}:{self._addr[1]}", "connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def send(self, data: bytes) -> bool:
        """Write ``data``; False when the server already closed the connection."""
        assert self._writer is not None
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), self._timeout)
        except (ConnectionError, OSError):
            return False
        return True

    async def chunk(self, data: bytes) -> bool:
        """One chunk of a chunked body (``b""`` sends the last chunk)."""
        return await self.send(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    async def response(self) -> RawResponse:
        """Read the whole answer (bounded by the timeout)."""
        assert self._reader is not None
        reader = self._reader
        status_line = await asyncio.wait_for(reader.readline(), self._timeout)
        if not status_line:
            raise ConnectionError("the server closed the connection without answering")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while True:
            line = await asyncio.wait_for(reader.readline(), self._timeout)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), self._timeout)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await asyncio.wait_for(reader.readline(), self._timeout)).strip() or b"0", 16)
                if size == 0:
                    break
                body += await asyncio.wait_for(reader.readexactly(size + 2), self._timeout)
                body = body[:-2]
        else:
            body = await asyncio.wait_for(reader.read(), self._timeout)
        return RawResponse(status, headers, body)
