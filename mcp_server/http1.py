"""A lean HTTP/1.1 client for plain-HTTP tool upstreams.

httpx (client plus httpcore over anyio) costs about 0.7 ms of CPU per request
on this kind of machine, more than everything else in a tool call put
together. This pool speaks HTTP/1.1 keep-alive straight on asyncio protocols
with the ``httptools`` parser (the one uvicorn uses) and costs a few tens of
microseconds. HTTPS upstreams (and mTLS) keep using the shared
``httpx.AsyncClient``.

Pooling: idle connections are kept per (host, port) and reused; at most
``max_connections`` are open at once. A reused connection that the server
closed before answering is retried once on a fresh one (nothing was received,
so the request was never processed).
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools
import httpx

__all__ = ["Http1Pool", "RawResponse", "ResponseTooLarge"]

_UNSAFE = re.compile(r"[\r\n\x00]")


class ResponseTooLarge(httpx.TransportError):
    """The upstream's answer exceeded the size limit (the connection is dropped)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self._done: asyncio.Future[None] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body = bytearray()
        self._received = False
        self._complete = False
        self._headers_done = False
        self._framed = False  # Content-Length or chunked: the parser knows where the body ends
        self._until_close = False
        self._keep_alive = False
        self._status = 0
        self._too_large = False

    # -- asyncio.Protocol ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            # A callback's exception arrives wrapped by the parser; the flag says which it was.
            if self._too_large:
                self._fail(ResponseTooLarge(f"the upstream answer is larger than {self._max_body} bytes"))
            else:
                self._fail(httpx.RemoteProtocolError(f"malformed response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._done is not None and not self._done.done():
            if self._headers_done and not self._framed:
                # A response without Content-Length or chunking ends with the connection.
                self._complete = True
                self._until_close = True
                self._done.set_result(None)
            elif not self._complete:
                self._done.set_exception(httpx.ReadError("the upstream closed the connection"))

    # -- httptools callbacks -------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._body += body
        if len(self._body) > self._max_body:
            self._too_large = True
            raise ResponseTooLarge("too large")

    def on_message_complete(self) -> None:
        # Read here: once the message is complete the parser is ready for the next one.
        self._keep_alive = self._parser.should_keep_alive()
        self._status = self._parser.get_status_code()
        self._complete = True
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    # -- use ------------------------------------------------------------------------
    def _fail(self, exc: Exception) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, head: bytes, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        """(status, headers, body, keep_alive); raises _Dropped if the connection ends first."""
        assert self.transport is not None
        self._reset()
        self._done = asyncio.get_running_loop().create_future()
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        try:
            await self._done
        except httpx.ReadError:
            raise _Dropped(self._received) from None
        return self._status, self._headers, bytes(self._body), self._keep_alive and not self._until_close


class _Dropped(Exception):
    def __init__(self, received: bool) -> None:
        super().__init__("connection dropped")
        self.received = received


@dataclass(slots=True)
class RawResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> str:
        for k, v in self.headers:
            if k.lower() == name:
                return v.decode("latin-1")
        return ""


class Http1Pool:
    """Plain HTTP/1.1 exchanges over pooled keep-alive connections (``http://`` URLs only)."""

    def __init__(self, *, max_connections: int = 200, max_response_bytes: int = 4 << 20) -> None:
        self._max_body = max_response_bytes
        self._idle: defaultdict[tuple[str, int], deque[_Connection]] = defaultdict(deque)
        self._slots = asyncio.Semaphore(max_connections)

    async def exchange(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> RawResponse:
        """Send one request and read the whole answer; raises httpx transport errors."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not a plain http URL: {url}")
        key = (parts.hostname, parts.port or 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = _head(method, target, parts.netloc, headers, body)
        async with self._slots:
            for attempt in (0, 1):
                conn, reused = await self._connection(key)
                try:
                    status, response_headers, data, keep_alive = await conn.exchange(head, body)
                except _Dropped as dropped:
                    conn.close()
                    if reused and not dropped.received and attempt == 0:
                        continue  # the server had closed the idle connection: try a fresh one
                    message = "the upstream closed the connection without answering"
                    raise httpx.RemoteProtocolError(message) from None
                except BaseException:
                    conn.close()  # cancelled or failed mid-exchange: its state is unknown
                    raise
                if keep_alive and not conn.closed:
                    self._idle[key].append(conn)
                else:
                    conn.close()
                return RawResponse(status, response_headers, data)
        raise AssertionError("unreachable")

    async def _connection(self, key: tuple[str, int]) -> tuple[_Connection, bool]:
        idle = self._idle[key]
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn, True
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: _Connection(self._max_body), key[0], key[1])
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {key[0]}:{key[1]}: {exc.strerror or exc}") from None
        return conn, False

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()


def _head(method: str, target: str, host: str, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"host: {host}"]
    for name, value in headers.items():
        if name in ("host", "content-length", "transfer-encoding", "connection"):
            continue
        if _UNSAFE.search(name) or _UNSAFE.search(value):
            # A claim or argument must never be able to split the request (header injection).
            raise httpx.LocalProtocolError(f"header {name!r} holds a control character")
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
