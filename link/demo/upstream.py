"""A small HTTP API standing in for the primary gateway (Kong) in the demo."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

_INVOICES = {
    "inv-1001": {"id": "inv-1001", "customer": "acme", "amount": 1250.0, "currency": "EUR", "status": "paid"},
    "inv-1002": {"id": "inv-1002", "customer": "acme", "amount": 89.9, "currency": "EUR", "status": "open"},
}


_MAX_BODY = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "demo-gateway"
    # The status line and headers go in one write and the body in another: with Nagle's algorithm on,
    # the body waited for Envoy's delayed ACK of the headers, 40 ms on some requests of a kept-alive
    # connection. (TCP_NODELAY, as Envoy sets it on its own connections.)
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        return

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        """The request body, whether sent with a length or chunked (Envoy forwards chunked)."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                size = int(size_line or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > _MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)  # the CRLF after each chunk
        length = int(self.headers.get("content-length") or 0)
        if length > _MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        try:
            body = self._body()
        except ValueError:
            self.close_connection = True
            self._reply(400, {"error": "unreadable or oversized body"})
            return
        path, _, query = self.path.partition("?")
        parts = [p for p in path.split("/") if p]
        stoa = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-stoa-")}
        if len(parts) >= 2 and parts[-2] == "status" and parts[-1].isdigit():
            self._reply(int(parts[-1]), {"status": int(parts[-1]), "path": path})
        elif parts[:3] == ["api", "invoices", "inv-500"]:
            # A failing backend, to show error snapshots (the response carries PII on purpose: it gets masked).
            self._reply(500, {"error": "ledger unavailable", "customer_email": "jane.doe@example.com",
                              "card": "4111 1111 1111 1111"})
        elif parts[:2] == ["api", "invoices"] and len(parts) == 3 and self.command == "GET":
            inv = _INVOICES.get(parts[2])
            self._reply(200 if inv else 404, inv or {"error": "not_found", "id": parts[2]})
        elif parts[-1:] == ["hello"]:
            # What the demo's say-hello tool promises: a greeting that echoes the name back.
            name = (parse_qs(query).get("name") or ["world"])[0][:200]
            self._reply(200, {"message": f"Hello, {name}!", "name": name, "path": path,
                              "method": self.command, "seen_by_gateway": stoa})
        elif parts[-1:] == ["invoices"] and self.command == "GET":
            self._reply(200, {"invoices": list(_INVOICES.values())})
        elif parts[:2] == ["api", "invoices"] and self.command == "POST":
            try:
                doc = json.loads(body or b"{}")
            except ValueError:
                self._reply(400, {"error": "invalid JSON"})
                return
            self._reply(201, {"id": "inv-2001", **doc})
        else:
            answer: dict[str, Any] = {"message": "hello from the primary gateway", "path": path,
                                      "method": self.command, "seen_by_gateway": stoa}
            if body:
                answer["received_bytes"] = len(body)
            self._reply(200, answer)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class DemoUpstream:
    """Runs in a thread; ``url`` once started."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="demo-upstream")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> DemoUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
