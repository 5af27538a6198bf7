"""A lean HTTP/1.1 client for plain-HTTP tool upstreams.

httpx (client plus httpcore over anyio) costs about 0.5 ms of CPU per request
on this kind of machine, more than everything else in a tool call put
together; aiohttp about 85 µs. This pool speaks HTTP/1.1 keep-alive straight
on asyncio protocols with the ``httptools`` parser (the one uvicorn uses) and
costs about 20 µs (``bench/bench_http1.py``, ADR 0022). HTTPS upstreams (and
mTLS) keep using the shared ``httpx.AsyncClient``.

Pooling, per (host, port):

- idle connections are reused most-recent first; one idle for longer than
  ``idle_timeout_s`` is closed (servers drop idle keep-alive connections after
  a few seconds: Node and uvicorn after 5 s, so the default stays below that);
- a connection the server closed, or that received bytes while idle, is
  dropped as soon as the event loop sees it, never handed out again;
- at most ``max_per_host`` connections are open (idle or busy); further
  requests wait in line, at most ``max_waiters_per_host`` of them, and the
  next one is refused with :class:`PoolFull`;
- at most ``max_connections`` exchanges run at once over all hosts.

A reused connection that the server closed before answering is retried once
on a fresh one (nothing was received, so the request was never processed).
Interim answers (``100 Continue``, ``103 Early Hints``) are skipped; the
answer to ``HEAD`` has no body whatever its headers announce.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools
import httpx

__all__ = ["Http1Pool", "PoolFull", "RawResponse", "ResponseTooLarge"]

_UNSAFE = re.compile(r"[\r\n\x00]")


class ResponseTooLarge(httpx.TransportError):
    """The upstream's answer exceeded the size limit (the connection is dropped)."""


class PoolFull(httpx.TransportError):
    """Too many requests already wait for a connection to this upstream."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self, max_body: int, on_lost: Callable[[_Connection], None]) -> None:
        self._max_body = max_body
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.counted = True  # holds one of its host's slots until discarded
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._fresh_parser = False
        self._done: asyncio.Future[None] | None = None
        self._reset(head=False)

    def _reset(self, head: bool) -> None:
        self._head = head
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
        if self._done is None or self._done.done():
            # Bytes while idle (a 408, or a body after a HEAD answer): the stream is out of step.
            self.close()
            return
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
            if self._headers_done and not self._framed and not self._head:
                # A response without Content-Length or chunking ends with the connection.
                self._complete = True
                self._until_close = True
                self._done.set_result(None)
            elif not self._complete:
                self._done.set_exception(httpx.ReadError("the upstream closed the connection"))
        self._on_lost(self)

    # -- httptools callbacks -------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._complete:
            # A second answer to one request: never hand this connection out again.
            self._keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status == 101:
            raise httpx.RemoteProtocolError("unexpected 101 Switching Protocols")
        self._headers_done = True
        self._status = status
        if self._head and not 100 <= status < 200:
            # No body follows a HEAD answer, but the parser cannot be told so: it would read the
            # next answer as this one's body. Finish here and start the next exchange afresh.
            self._fresh_parser = True
            self._finish(self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self._complete:
            self._keep_alive = False  # a body after a HEAD answer
            return
        self._body += body
        if len(self._body) > self._max_body:
            self._too_large = True
            raise ResponseTooLarge("too large")

    def on_message_complete(self) -> None:
        if self._complete:
            return
        if 100 <= self._status < 200:
            # An interim answer (100 Continue, 103 Early Hints): the final one follows.
            self._headers = []
            self._body = bytearray()
            self._framed = False
            self._headers_done = False
            return
        # Read here: once the message is complete the parser is ready for the next one.
        self._finish(self._parser.should_keep_alive())

    def _finish(self, keep_alive: bool) -> None:
        self._keep_alive = keep_alive
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

    async def exchange(self, head: bytes, body: bytes,
                       is_head: bool) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        """(status, headers, body, keep_alive); raises _Dropped if the connection ends first."""
        assert self.transport is not None
        if self._fresh_parser:
            self._parser = httptools.HttpResponseParser(self)
            self._fresh_parser = False
        self._reset(is_head)
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
    """A whole upstream answer: status, headers as received, body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> str:
        """The first value of header ``name`` (lower case), or ``""``."""
        for k, v in self.headers:
            if k.lower() == name:
                return v.decode("latin-1")
        return ""


@dataclass(slots=True)
class _Host:
    """The connections of one (host, port): idle ones, how many are open, who waits."""

    idle: deque[_Connection] = field(default_factory=deque)  # oldest first
    open: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    sweep: asyncio.TimerHandle | None = None  # closes expired idle connections; armed while any are idle


class Http1Pool:
    """Plain HTTP/1.1 exchanges over pooled keep-alive connections (``http://`` URLs only)."""

    def __init__(self, *, max_connections: int = 200, max_response_bytes: int = 4 << 20,
                 max_per_host: int | None = None, max_waiters_per_host: int = 1000,
                 idle_timeout_s: float = 4.0) -> None:
        self._max_body = max_response_bytes
        self._hosts: defaultdict[tuple[str, int], _Host] = defaultdict(_Host)
        self._slots = asyncio.Semaphore(max_connections)
        self._per_host = max_per_host or max_connections
        self._max_waiters = max_waiters_per_host
        self._idle_timeout = idle_timeout_s

    async def exchange(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> RawResponse:
        """Send one request and read the whole answer; raises httpx transport errors."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not a plain http URL: {url}")
        key = (parts.hostname, parts.port or 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = _head(method, target, parts.netloc, headers, body)
        is_head = method.upper() == "HEAD"
        async with self._slots:
            for attempt in (0, 1):
                conn, reused = await self._connection(key)
                try:
                    status, response_headers, data, keep_alive = await conn.exchange(head, body, is_head)
                except _Dropped as dropped:
                    self._discard(key, conn)
                    if reused and not dropped.received and attempt == 0:
                        continue  # the server had closed the idle connection: try a fresh one
                    message = "the upstream closed the connection without answering"
                    raise httpx.RemoteProtocolError(message) from None
                except BaseException:
                    self._discard(key, conn)  # cancelled or failed mid-exchange: its state is unknown
                    raise
                if keep_alive and not conn.closed:
                    self._release(key, conn)
                else:
                    self._discard(key, conn)
                return RawResponse(status, response_headers, data)
        raise AssertionError("unreachable")

    def open_connections(self, host: str, port: int) -> int:
        """How many connections to (host, port) are open, idle or busy (for tests and metrics)."""
        entry = self._hosts.get((host, port))
        return entry.open if entry is not None else 0

    async def _connection(self, key: tuple[str, int]) -> tuple[_Connection, bool]:
        host = self._hosts[key]
        while True:
            if host.idle:
                now = asyncio.get_running_loop().time()
                while host.idle:
                    conn = host.idle.pop()
                    if not conn.closed and now - conn.idle_since < self._idle_timeout:
                        return conn, True
                    self._discard(key, conn)
            if host.open < self._per_host:
                break
            await self._wait_turn(host)
        host.open += 1
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(self._max_body, lambda c: self._discard(key, c)), key[0], key[1])
        except BaseException as exc:
            host.open -= 1
            self._wake(host)
            if isinstance(exc, OSError):
                raise httpx.ConnectError(f"cannot connect to {key[0]}:{key[1]}: {exc.strerror or exc}") from None
            raise
        return conn, False

    async def _wait_turn(self, host: _Host) -> None:
        if len(host.waiters) >= self._max_waiters:
            raise PoolFull(f"{len(host.waiters)} requests already wait for a connection to this upstream")
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        host.waiters.append(turn)
        try:
            await turn
        except BaseException:
            if turn in host.waiters:
                host.waiters.remove(turn)
            elif turn.done() and not turn.cancelled():
                self._wake(host)  # woken, then cancelled: pass the turn on
            raise

    @staticmethod
    def _wake(host: _Host) -> None:
        while host.waiters:
            turn = host.waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return

    def _release(self, key: tuple[str, int], conn: _Connection) -> None:
        host = self._hosts[key]
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        host.idle.append(conn)
        if host.sweep is None:
            # One timer per host, not one per release: a busy host pays nothing for expiry.
            host.sweep = loop.call_at(conn.idle_since + self._idle_timeout, self._sweep, key)
        self._wake(host)

    def _sweep(self, key: tuple[str, int]) -> None:
        host = self._hosts[key]
        host.sweep = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() - self._idle_timeout
        while host.idle and host.idle[0].idle_since <= deadline:
            self._discard(key, host.idle.popleft())
        if host.idle:
            host.sweep = loop.call_at(host.idle[0].idle_since + self._idle_timeout, self._sweep, key)

    def _discard(self, key: tuple[str, int], conn: _Connection) -> None:
        """Close ``conn`` and give its slot back (once; also called when the server closes it)."""
        if not conn.closed:
            conn.close()
        if conn.counted:
            conn.counted = False
            host = self._hosts[key]
            host.open -= 1
            if conn in host.idle:
                host.idle.remove(conn)
            self._wake(host)

    def close(self) -> None:
        """Close every idle connection."""
        for key, host in list(self._hosts.items()):
            if host.sweep is not None:
                host.sweep.cancel()
                host.sweep = None
            while host.idle:
                self._discard(key, host.idle.pop())


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
