"""Link's MCP server as the conformance suite sees it, in one of two configurations.

    python tests/conformance/server.py --target fixture [--sse-response] --port PORT
    python tests/conformance/server.py --target federated --port PORT

- ``fixture``: Link's own registry entries (tests/conformance/tools/): Tools backed by a small local
  HTTP upstream (below), Resources and Prompts, so the suite exercises Link's HTTP tool mapping and
  its registry content.
- ``federated``: a ToolSet (tests/conformance/federated/) federating the suite's fixture server built
  with the MCP SDK (tests/conformance/sdk_fixture.py), so the suite exercises the federation and its
  relay of progress, logs, sampling and elicitation. SSE answers (the relay rides the call's stream).

Prints ``READY <url>`` once serving; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from link.registry import ToolRegistry  # noqa: E402
from link.settings import Settings, load_settings  # noqa: E402
from mcp_server.embedded import EmbeddedMcpServer  # noqa: E402
from tests.conformance.sdk_fixture import RECONNECTION_S, TOOL_NAMES, build_fixture  # noqa: E402
from tests.harness.mcp_upstreams import serve_asgi  # noqa: E402

# A 1x1 PNG and a silent 1-sample WAV.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==")
WAV = base64.b64decode("UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQIAAAAAAA==")
ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "/simple-text": (200, "text/plain; charset=utf-8", b"This is a simple text response for testing."),
    "/error": (500, "text/plain; charset=utf-8", b"This tool intentionally returns an error for testing"),
    "/image": (200, "image/png", PNG),
    "/audio": (200, "audio/wav", WAV),
    "/slow": (200, "text/plain; charset=utf-8", b"Reconnection test completed successfully"),
    "/static-text": (200, "text/plain; charset=utf-8", b"This is the content of the static text resource."),
}
# How long /slow takes, and when the server cuts a call's SSE stream (mcp.sse_poll_after_s): the
# call outlives its stream, so resuming is what delivers its result.
SLOW_S = RECONNECTION_S  # as slow as the federated fixture's test_reconnection
POLL_AFTER_S = 0.2


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        return

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0]
        if path == "/slow":
            time.sleep(SLOW_S)  # a thread of the ThreadingHTTPServer; nothing else waits on it
        status, ctype, payload = ANSWERS.get(path, (200, "application/json", body or b"{}"))
        if path.startswith("/template/") and path.endswith("/data"):
            # The resource template test://template/{id}/data: the id must show in the content.
            ident = path[len("/template/"):-len("/data")]
            payload = b'{"id": "%s", "templateTest": true, "data": "Data for ID: %s"}' % (ident.encode(), ident.encode())
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer


TENANT = "conformance"
COMMON: dict[str, Any] = {
    "mcp.public_tenants": [TENANT], "mcp.sse_poll_after_s": POLL_AFTER_S,
    "policy.enabled": False, "metering.enabled": False, "snapshots.enabled": False,
    "server.grpc_address": "127.0.0.1:0", "server.admin_address": "127.0.0.1:0", "log_level": "warning",
}


@contextlib.asynccontextmanager
async def fixture(port: int, sse_response: bool) -> AsyncIterator[Settings]:
    """Link's registry fixture over the local HTTP upstream."""
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    os.environ["CONFORMANCE_UPSTREAM"] = f"http://127.0.0.1:{upstream.server_address[1]}"
    try:
        yield load_settings(env={}, overrides={
            **COMMON, "registry.source": "files", "registry.path": str(Path(__file__).parent / "tools"),
            "mcp.port": port, "mcp.json_response": not sse_response})
    finally:
        upstream.shutdown()


@contextlib.asynccontextmanager
async def federated(port: int) -> AsyncIterator[Settings]:
    """A ToolSet federating the SDK-built fixture server (served in this event loop)."""
    async with serve_asgi(build_fixture().server.streamable_http_app(host="127.0.0.1"), "on") as url:
        os.environ["CONFORMANCE_UPSTREAM_MCP"] = url
        yield load_settings(env={}, overrides={
            **COMMON, "registry.source": "files", "registry.path": str(Path(__file__).parent / "federated"),
            "mcp.port": port, "mcp.json_response": False})


async def _federation_ready(registry: ToolRegistry, within: float = 30.0) -> None:
    """Until the ToolSet's tools are discovered (bounded); the upstream is local, so this is quick."""
    deadline = time.monotonic() + within
    while {t.name for t in registry.tools(TENANT)} != set(TOOL_NAMES):
        if time.monotonic() > deadline:
            raise SystemExit(f"the federated fixture's tools were not discovered in {within:.0f} s: "
                             f"{sorted(t.name for t in registry.tools(TENANT))}")
        await asyncio.sleep(0.05)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", choices=("fixture", "federated"), default="fixture")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sse-response", action="store_true", help="fixture: answer POSTs with SSE streams, not JSON")
    args = parser.parse_args()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    config = fixture(args.port, args.sse_response) if args.target == "fixture" else federated(args.port)
    async with config as settings, EmbeddedMcpServer(settings) as mcp:
        registry: ToolRegistry = mcp.app.extras["registry"]
        errors = registry.errors()
        if errors:
            raise SystemExit(f"conformance registry entries refused: {errors}")
        if args.target == "federated":
            await _federation_ready(registry)
        print(f"READY {mcp.url}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
