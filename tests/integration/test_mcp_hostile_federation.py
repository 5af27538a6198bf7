"""A federated MCP server is untrusted too: answers nested deeper than ``mcp.max_json_depth`` come back
as a clean tool error through the real gateway, never a 500; ordinary answers pass unchanged.

The federated server is another real STOA Link MCP server (configured with a higher depth limit, as
a foreign server may be) whose tool's HTTP upstream answers with deeply nested JSON."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import pytest
import yaml

from mcp_server.embedded import EmbeddedMcpServer
from tests.harness.procs import free_port
from tests.unit.mcp_server.support import settings, tool

pytestmark = pytest.mark.integration


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


ANSWERS = {"/shallow": _nested(5), "/deep": _nested(100)}


class _Answers(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        body = ANSWERS[self.path.split("?")[0]]
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def answers() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    server.daemon_threads = True
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[EmbeddedMcpServer]:
    with answers() as url:
        up_tools = tmp_path / "up"
        up_tools.mkdir()
        (up_tools / "t.yaml").write_text(yaml.safe_dump_all([
            tool("shallow", endpoint=f"{url}/shallow", method="GET"),
            tool("deep", endpoint=f"{url}/deep", method="GET"),
        ]))
        upstream_settings = settings(tmp_path, registry__source="files", registry__path=str(up_tools),
                                     mcp__port=free_port(), mcp__max_json_depth=128)
        async with EmbeddedMcpServer(upstream_settings) as upstream:
            sets = tmp_path / "sets"
            sets.mkdir()
            (sets / "s.yaml").write_text(yaml.safe_dump({
                "apiVersion": "gostoa.dev/v1alpha1", "kind": "ToolSet",
                "metadata": {"name": "foreign", "namespace": "demo"},
                "spec": {"upstream": {"url": upstream.url, "transport": "streamable-http", "timeoutSeconds": 5}}}))
            s = settings(tmp_path, registry__source="files", registry__path=str(sets),
                         mcp__federation_backoff_initial_s=0.1, mcp__federation_backoff_max_s=0.3)
            async with EmbeddedMcpServer(s) as gw:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 15
                async with httpx.AsyncClient() as http:
                    while True:
                        names = {t["name"] for t in (await http.get(f"{gw.base_url}/mcp/v1/tools")).json()["tools"]}
                        if {"shallow", "deep"} <= names:
                            break
                        assert loop.time() < deadline, names
                        await asyncio.sleep(0.05)
                yield gw


async def test_a_too_deep_federated_answer_is_a_clean_tool_error(gateway: EmbeddedMcpServer) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        deep = await http.post(f"{gateway.base_url}/mcp/v1/tools/deep", json={})
        shallow = await http.post(f"{gateway.base_url}/mcp/v1/tools/shallow", json={})
    assert deep.status_code == 200, deep.text[:200]
    assert deep.json()["isError"] is True
    assert deep.json()["structuredContent"]["error"] == "upstream_invalid"
    assert deep.headers["x-stoa-upstream-status"] == "502"
    assert shallow.status_code == 200 and shallow.json()["isError"] is False
    assert shallow.json()["structuredContent"] == {"a": {"a": {"a": {"a": {"a": 1}}}}}
