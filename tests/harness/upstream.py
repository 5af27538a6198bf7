"""A real HTTP upstream standing in for the primary gateway: records what reached it, echoes it back."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    # Every header line as received, in order (repeated names kept; ``headers`` keeps the last).
    raw_headers: tuple[tuple[str, str], ...] = ()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no wait for a delayed ACK between
    server: _Server

    def log_message(self, *args: Any) -> None:  # quiet
        return

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            body = self._chunked()
        else:
            body = self.rfile.read(length) if length else b""
        raw = tuple((k.lower(), v) for k, v in self.headers.items())
        seen = Seen(self.command, self.path, dict(raw), body, raw)
        with self.server.lock:
            self.server.seen.append(seen)
        status = 200
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) >= 2 and parts[-2] == "status" and parts[-1].isdigit():
            status = int(parts[-1])
        payload = json.dumps({"method": self.command, "path": self.path, "headers": seen.headers,
                              "body": body.decode("utf-8", "replace"), "status": status}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if "dribble=1" in self.path.partition("?")[2].split("&"):
            # The body in 4 KiB writes with pauses: Envoy reads it in parts, as from a slow gateway.
            for i in range(0, len(payload), 4096):
                self.wfile.write(payload[i:i + 4096])
                self.wfile.flush()
                time.sleep(0.002)
            return
        self.wfile.write(payload)

    def _chunked(self) -> bytes:
        """A chunked request body (Envoy re-frames bodies it buffered for ext_proc)."""
        out = b""
        for _ in range(100_000):  # bounded: a chunk per iteration
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return out
            out += self.rfile.read(size)
            self.rfile.readline()
        return out

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[Seen] = []
        self.lock = threading.Lock()


class EchoUpstream:
    """``with EchoUpstream() as up: up.url, up.requests``"""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="echo-upstream")

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Seen]:
        with self._server.lock:
            return list(self._server.seen)

    def clear(self) -> None:
        with self._server.lock:
            self._server.seen.clear()

    def start(self) -> EchoUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> EchoUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
