"""The HTTPS server the API server calls: ``POST /mutate`` (AdmissionReview v1), ``GET /healthz``.

Plain threads on purpose: admission traffic is a few requests per pod creation,
and a thread per connection keeps TLS handshakes (done in the connection's own
thread, with a timeout) from ever blocking the accept loop.
"""

from __future__ import annotations

import json
import logging
import signal
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from link.injector.admission import mutate_body
from link.injector.config import InjectorConfig
from link.injector.tls import ReloadingCertificate

_log = logging.getLogger("stoa.link.injector")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """How the webhook server runs (``stoa-link injector`` flags)."""

    tls_cert: str
    tls_key: str
    host: str = "0.0.0.0"
    port: int = 8443
    config: InjectorConfig = field(default_factory=InjectorConfig)
    max_body_bytes: int = 8 << 20  # far above any real pod; the API server caps objects near 1.5 MiB
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    cert_check_interval_s: float = 10.0


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, options: ServeOptions, tls: ReloadingCertificate) -> None:
        self.options = options
        self.tls = tls
        super().__init__((options.host, options.port), _make_handler(options))

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's own thread: the handshake cannot stall other clients.
        request.settimeout(self.options.handshake_timeout_s)
        try:
            conn = self.tls.context().wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            _log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            conn.settimeout(self.options.idle_timeout_s)
            super().finish_request(conn, client_address)
        finally:
            conn.close()


def _make_handler(options: ServeOptions) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # the API server keeps connections open
        server_version = "stoa-link-injector"

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] in ("/healthz", "/readyz"):
                self._send(200, b"ok\n", "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def do_POST(self) -> None:
            length = self.headers.get("content-length")
            if length is None or not length.isdigit():
                self.close_connection = True
                self._send(411, b"Content-Length required\n", "text/plain")
                return
            size = int(length)
            if self.path.split("?", 1)[0] != "/mutate":
                self._discard(size)
                self._send(404, b"not found\n", "text/plain")
                return
            if size > options.max_body_bytes:
                self._discard(size)
                self._send(413, b"AdmissionReview too large\n", "text/plain")
                return
            status, review = mutate_body(self.rfile.read(size), options.config)
            self._send(status, json.dumps(review).encode(), "application/json")

        def _discard(self, size: int) -> None:
            """Read and drop a body we will not use, so the client gets our answer.

            Closing with unread data makes TCP reset the connection, which can destroy the
            answer in flight; beyond a bound we close anyway rather than read forever.
            """
            self.close_connection = True
            remaining = size if size <= 4 * options.max_body_bytes else 0
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            _log.debug("%s " + format, self.address_string(), *args)

    return Handler


class InjectorServer:
    """The webhook server; :meth:`start` runs it in a thread, :func:`serve` in the foreground."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        tls = ReloadingCertificate(options.tls_cert, options.tls_key, options.cert_check_interval_s)
        self._server = _TLSServer(options, tls)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def serve_forever(self) -> None:
        _log.info("sidecar injector listening on https://%s:%d/mutate", self.options.host, self.port)
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> InjectorServer:
        self._thread = threading.Thread(target=self.serve_forever, name="stoa-injector", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close the socket; connections in flight finish on their threads."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> InjectorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(options: ServeOptions) -> None:
    """Run the webhook until SIGTERM or SIGINT (blocking)."""
    server = InjectorServer(options)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _log.info("signal %d: stopping the sidecar injector", signum)
        # shutdown() waits for serve_forever() to return, so it must not run on this (the serving) thread.
        threading.Thread(target=server._server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.serve_forever()
    finally:
        server._server.server_close()


__all__ = ["InjectorServer", "ServeOptions", "serve"]
