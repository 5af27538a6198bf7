"""The MCP server as the conformance suite sees it: tools backed by a small local upstream.

    python tests/conformance/server.py --port PORT [--sse-response]

Prints ``READY <url>`` once serving; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from link.settings import load_settings  # noqa: E402
from mcp_server.embedded import EmbeddedMcpServer  # noqa: E402

# A 1x1 PNG and a silent 1-sample WAV.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==")
WAV = base64.b64decode("UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQIAAAAAAA==")
ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "/simple-text": (200, "text/plain; charset=utf-8", b"This is a simple text response for testing."),
    "/error": (500, "text/plain; charset=utf-8", b"This tool intentionally returns an error for testing"),
    "/image": (200, "image/png", PNG),
    "/audio": (200, "audio/wav", WAV),
}


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        return

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        status, ctype, payload = ANSWERS.get(self.path.split("?")[0], (200, "application/json", body or b"{}"))
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sse-response", action="store_true", help="answer POSTs with SSE streams, not JSON")
    args = parser.parse_args()
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    os.environ["CONFORMANCE_UPSTREAM"] = f"http://127.0.0.1:{upstream.server_address[1]}"
    settings = load_settings(env={}, overrides={
        "registry.source": "files", "registry.path": str(Path(__file__).parent / "tools"),
        "mcp.port": args.port, "mcp.public_tenants": ["conformance"], "mcp.json_response": not args.sse_response,
        "policy.enabled": False, "metering.enabled": False, "snapshots.enabled": False,
        "server.grpc_address": "127.0.0.1:0", "server.admin_address": "127.0.0.1:0", "log_level": "warning",
    })
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with EmbeddedMcpServer(settings) as mcp:
        errors = mcp.app.extras["registry"].errors()
        if errors:
            raise SystemExit(f"conformance tools refused: {errors}")
        print(f"READY {mcp.url}", flush=True)
        await stop.wait()
    upstream.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
