"""One HTTP/1.1 connection from Envoy's ext_authz: an ``asyncio.Protocol`` over ``httptools``.

Envoy sends one check at a time per connection (it does not pipeline); pipelined
requests are still answered, in order, one decision at a time. Every bound is
explicit: request line + headers (431), body (413), time to send the headers
(slowloris: 408 and close), queued pipelined requests (reading pauses). A
request the parser refuses gets 400 and the connection closes; nothing a peer
sends can raise out of the protocol or block the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import httptools

from link.httpauthz.mapping import plain_response
from link.httpauthz.wire import CHECK_PREFIX, HEALTH_PATH, wire_status

_log = logging.getLogger("stoa.link.httpauthz")

_MAX_QUEUED = 8  # pipelined requests waiting behind the one being decided
_INTERNAL_BODY = b'{"error":"internal_error","reason":"internal error"}'
INTERNAL_ERROR = (b"HTTP/1.1 %d Refused\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                  b"connection: close\r\n\r\n%s" % (wire_status(500), len(_INTERNAL_BODY), _INTERNAL_BODY))


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds every connection enforces."""

    max_header_bytes: int = 16_384  # request line + all header names and values
    max_body_bytes: int = 1_048_576
    header_timeout_s: float = 10.0  # from the first byte of a request to the end of its headers
    idle_timeout_s: float = 300.0  # a keep-alive connection with nothing to do


@dataclass(slots=True)
class Check:
    """One parsed request."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes | None
    keep_alive: bool


# The server's decision callback: a parsed check -> the whole response (bytes) to write.
Decide = Callable[[Check], Coroutine[Any, Any, bytes]]


class ServerState:
    """What all connections of one server share."""

    def __init__(self, decide: Decide, limits: Limits, max_connections: int) -> None:
        self.decide = decide
        self.limits = limits
        self.max_connections = max_connections
        self.connections: set[CheckProtocol] = set()
        self.draining = False
        self.rejected = 0
        self._all_closed: asyncio.Event | None = None

    def drain(self) -> asyncio.Event:
        """No new requests are read: idle connections close now, busy ones after their answer.

        The event is set once the last connection is gone.
        """
        self.draining = True
        self._all_closed = asyncio.Event()
        for conn in list(self.connections):
            conn.close_when_idle()
        if not self.connections:
            self._all_closed.set()
        return self._all_closed

    def forget(self, conn: CheckProtocol) -> None:
        self.connections.discard(conn)
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()


class CheckProtocol(asyncio.Protocol):
    """Parse, decide, answer; one connection."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._limits = state.limits
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None  # the check being decided (kept referenced)
        self._deadline: float | None = None  # loop time the header or idle bound ends (None: no bound)
        self._queue: deque[Check] = deque()
        self._busy = False
        self._paused = False
        self._closing = False
        # The request being parsed.
        self._url = b""
        self._header_bytes = 0
        self._headers: dict[str, str] = {}  # lower-cased names, repeats joined with ","
        self._body: list[bytes] = []
        self._body_len = 0
        self._in_message = False
        self._eof = False
        self._refused: _Refused | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        if self._state.draining or len(self._state.connections) >= self._state.max_connections:
            self._state.rejected += 1
            self._transport.abort()
            return
        self._state.connections.add(self)
        self._arm(self._limits.idle_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._state.forget(self)
        self._closing = True
        self._stop_timer()
        self._queue.clear()
        self._transport = None  # an in-flight decision finishes; its answer is dropped

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "upgrades are not supported")
        except httptools.HttpParserError as exc:
            refused = self._refused  # a bound a callback hit (httptools wraps the callback's exception)
            if refused is not None:
                self._fail(refused.status, refused.text)
            else:
                self._fail(400, f"malformed request: {exc}")

    def eof_received(self) -> bool | None:
        # The peer half-closed: answer what is queued, then close (None closes now when idle).
        self._eof = True
        return True if (self._busy or self._queue) else None

    # -- httptools callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_message = True
        self._url = b""
        self._header_bytes = 0
        self._headers = {}
        self._body = []
        self._body_len = 0
        self._arm(self._limits.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        # Called per header: the bound is counted inline (no method call).
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > self._limits.max_header_bytes:
            self._count(0)  # raises the 431
        key = name.decode("latin-1").lower()
        text = value.decode("utf-8", "replace")
        headers = self._headers
        headers[key] = f"{headers[key]},{text}" if key in headers else text

    def on_headers_complete(self) -> None:
        self._disarm()
        if self._parser.should_upgrade():  # a check is one request/response; never a protocol switch
            self._refuse(400, "upgrades are not supported")

    def on_body(self, body: bytes) -> None:
        self._body_len += len(body)
        if self._body_len > self._limits.max_body_bytes:
            self._refuse(413, f"body larger than {self._limits.max_body_bytes} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        headers = self._headers
        body = b"".join(self._body) if self._body else None
        parser = self._parser
        check = Check(parser.get_method().decode("ascii", "replace"), self._url.decode("utf-8", "replace"),
                      headers, body, parser.should_keep_alive())
        self._queue.append(check)
        if len(self._queue) > _MAX_QUEUED and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        if not self._busy:
            self._next()

    # -- answering ----------------------------------------------------------------------
    def _next(self) -> None:
        while self._queue and not self._closing:
            check = self._queue.popleft()
            if self._paused and len(self._queue) <= _MAX_QUEUED // 2 and self._transport is not None:
                self._paused = False
                self._transport.resume_reading()
            if not check.target.startswith(CHECK_PREFIX) or (
                    len(check.target) > len(CHECK_PREFIX) and check.target[len(CHECK_PREFIX)] not in "/?"):
                self._write(self._local(check), check.keep_alive)
                continue
            self._busy = True
            # The task writes its own answer: no done callback, no second turn of the loop per check.
            self._task = self._loop.create_task(self._answer(check))
            return
        if not self._busy and not self._in_message:
            if self._eof or self._state.draining:
                self._close()
            else:
                self._arm(self._limits.idle_timeout_s)

    async def _answer(self, check: Check) -> None:
        try:
            response = await self._state.decide(check)
        except Exception:  # the shell maps pipeline errors to decisions; this is a bug in the shell
            self._busy = False
            _log.exception("check failed")
            # Still a refusal Link decided: the reserved status, so fail-open never lets it through.
            self._write(INTERNAL_ERROR, keep_alive=False)
            return
        except BaseException:  # cancelled (the server stops): nothing more is answered
            self._busy = False
            raise
        self._busy = False
        self._write(response, check.keep_alive)
        self._next()

    def _write(self, response: bytes, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.write(response)
        if not keep_alive or self._state.draining:
            self._close()

    def _local(self, check: Check) -> bytes:
        if check.target.split("?", 1)[0] == HEALTH_PATH:
            if self._state.draining:
                return plain_response(503, "draining", keep_alive=check.keep_alive)
            return plain_response(200, "ok", keep_alive=check.keep_alive)
        return plain_response(404, f"not a check: paths start with {CHECK_PREFIX}", keep_alive=check.keep_alive)

    # -- bounds -------------------------------------------------------------------------
    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self._limits.max_header_bytes:
            self._refuse(431, f"request line and headers larger than {self._limits.max_header_bytes} bytes")

    def _refuse(self, status: int, text: str) -> None:
        self._refused = _Refused(status, text)
        raise self._refused

    def _arm(self, seconds: float) -> None:
        """Set the connection's one deadline. Per check this only moves a number: the loop's timer is
        replaced only when it would fire too late, and a timer that fires early re-arms itself."""
        deadline = self._loop.time() + seconds
        self._deadline = deadline
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._timed_out)

    def _disarm(self) -> None:
        self._deadline = None  # a pending timer finds nothing due when it fires

    def _stop_timer(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self._closing:
            return
        if self._loop.time() < deadline:  # moved since this timer was set
            self._timer = self._loop.call_at(deadline, self._timed_out)
            return
        self._deadline = None
        if self._busy:
            return
        if self._in_message:
            self._fail(408, "request headers not received in time")
        else:
            self._close()

    def _fail(self, status: int, text: str) -> None:
        """Answer a refusal the parser or a bound raised, and close (the stream is out of sync)."""
        self._queue.clear()
        transport = self._transport
        if transport is not None and not self._closing:
            if not self._busy:
                transport.write(plain_response(status, text))
            self._close()

    def _close(self) -> None:
        self._closing = True
        self._stop_timer()
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection at once (the end of a draining server's grace)."""
        self._closing = True
        self._stop_timer()
        if self._transport is not None:
            self._transport.abort()

    def close_when_idle(self) -> None:
        """Used by a draining server: close now unless a decision is being made."""
        if not self._busy and not self._queue:
            self._close()


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing with an HTTP status."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def protocol_factory(state: ServerState) -> Callable[[], Any]:
    return lambda: CheckProtocol(state)
