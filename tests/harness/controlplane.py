"""A local STOA control plane for tests: records register/heartbeat calls, answers as scripted.

By default it behaves like the real one (ADR-057): ``register`` hands out a new
gateway id and the configured heartbeat interval; a heartbeat for a known id is
answered 200 and for an unknown id 404; with ``gateway_key`` set, a missing or
wrong ``X-Gateway-Key`` gets 401. ``script(kind, ...)`` queues answers that take
precedence (a status code, or ``(status, json_body)``), one per call.

Refused connections: construct with ``port=free_port()`` and call ``start()``
later, or ``stop()`` and ``start()`` again on the same port.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.harness.procs import free_port, wait_until

_HEARTBEAT = re.compile(r"^/v1/internal/gateways/([^/]+)/heartbeat$")
_REGISTER = "/v1/internal/gateways/register"

Answer = int | tuple[int, Any]


@dataclass
class Call:
    """One request the control plane received, and what it answered."""

    kind: str  # "register" | "heartbeat" | "other"
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    gateway_id: str | None = None
    at: float = field(default_factory=time.monotonic)


class ControlPlaneServer:
    """An HTTP control plane in a background thread, on 127.0.0.1."""

    def __init__(self, *, port: int | None = None, heartbeat_interval_s: float = 30,
                 gateway_key: str | None = None) -> None:
        self.port = port or free_port()
        self.heartbeat_interval_s = heartbeat_interval_s
        self.gateway_key = gateway_key
        self.calls: list[Call] = []
        self.known: set[str] = set()
        self._scripts: dict[str, deque[Answer]] = {"register": deque(), "heartbeat": deque()}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting -----------------------------------------------------------
    def script(self, kind: str, *answers: Answer) -> None:
        """Queue answers for the next calls of ``kind`` ("register" or "heartbeat")."""
        with self._lock:
            self._scripts[kind].extend(answers)

    def forget(self) -> None:
        """Forget every gateway id, so the next heartbeats get 404."""
        with self._lock:
            self.known.clear()

    def of_kind(self, kind: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.kind == kind]

    def wait_for(self, kind: str, count: int, timeout: float = 10.0) -> list[Call]:
        """Wait (bounded, blocking this thread) until ``count`` calls of ``kind`` arrived; return them."""
        if not wait_until(lambda: len(self.of_kind(kind)) >= count, timeout=timeout):
            raise TimeoutError(f"{len(self.of_kind(kind))} {kind} calls after {timeout}s, wanted {count}")
        return self.of_kind(kind)

    async def await_calls(self, kind: str, count: int, timeout: float = 10.0) -> list[Call]:  # noqa: ASYNC109
        """Like :meth:`wait_for`, but yields to the event loop (for clients running on it)."""
        try:
            await until(lambda: len(self.of_kind(kind)) >= count, timeout=timeout)
        except TimeoutError:
            got = len(self.of_kind(kind))
            raise TimeoutError(f"{got} {kind} calls after {timeout}s, wanted {count}") from None
        return self.of_kind(kind)

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> ControlPlaneServer:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"controlplane-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ControlPlaneServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour -----------------------------------------------------------
    def _answer(self, path: str, headers: dict[str, str], body: Any) -> tuple[Call, Any]:
        with self._lock:
            m = _HEARTBEAT.match(path)
            kind = "register" if path == _REGISTER else "heartbeat" if m else "other"
            gateway_id = m.group(1) if m else None
            script = self._scripts.get(kind)
            payload: Any = {}
            if script:
                answer = script.popleft()
                status, payload = answer if isinstance(answer, tuple) else (answer, {})
            elif kind == "other":
                status = 404
            elif self.gateway_key is not None and headers.get("x-gateway-key") != self.gateway_key:
                status, payload = 401, {"detail": "invalid gateway key"}
            elif kind == "register":
                gateway_id = str(uuid.uuid4())
                self.known.add(gateway_id)
                status, payload = 200, {"gateway_id": gateway_id,
                                        "heartbeat_interval_s": self.heartbeat_interval_s}
            else:
                status = 200 if gateway_id in self.known else 404
            if kind == "register" and status == 200 and isinstance(payload, dict):
                gateway_id = payload.get("gateway_id", gateway_id)
                if isinstance(gateway_id, str):
                    self.known.add(gateway_id)
            call = Call(kind=kind, path=path, headers=headers, body=body, status=status,
                        gateway_id=gateway_id)
            self.calls.append(call)
            return call, payload


def _make_handler(server: ControlPlaneServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no wait for a delayed ACK between

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            headers = {k.lower(): v for k, v in self.headers.items()}
            call, payload = server._answer(self.path, headers, body)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(call.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


class GatedSleep:
    """Replaces asyncio.sleep in the client: records each delay and waits for the test to release it.

    This makes the client's timing fully observable without timed assertions:
    the delays it *asked* for are the intervals and backoffs under test.
    """

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._permits = asyncio.Semaphore(0)
        self.waiting = 0

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.waiting += 1
        try:
            await self._permits.acquire()
        finally:
            self.waiting -= 1

    async def asleep(self, count: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait (bounded) until the client has started its ``count``-th sleep and is in it."""
        await until(lambda: len(self.delays) >= count and self.waiting > 0, timeout=timeout)

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._permits.release()


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Wait (bounded) on the event loop until ``predicate()`` is truthy."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.005)
