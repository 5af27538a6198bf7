"""One Link process: MCP inside `serve` in sidecar mode (or not), ports taken first, a failed start
leaves nothing bound."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from link.runtime import LinkRuntime, serves_mcp
from link.settings import ConfigError
from tests.harness.link_server import LinkThread, link_settings


def test_sidecar_serves_mcp_unless_disabled() -> None:
    assert serves_mcp(link_settings())
    assert not serves_mcp(link_settings({"mcp.enabled": False}))
    assert not serves_mcp(link_settings({"mode": "edge-mcp"}))  # `stoa-link mcp`'s job


def test_one_process_serves_admin_and_mcp_with_one_metrics_registry() -> None:
    with LinkThread(link_settings()) as link:
        mcp = link.mcp_url
        assert httpx.get(f"{mcp}/healthz", timeout=5).json() == {"status": "ok"}
        anonymous = httpx.get(f"{mcp}/mcp/v1/tools", timeout=5)  # no public tenant here: a challenge
        assert anonymous.status_code == 401 and "www-authenticate" in anonymous.headers
        admin_metrics = httpx.get(f"{link.admin_url}/metrics", timeout=5).text
        mcp_metrics = httpx.get(f"{mcp}/metrics", timeout=5).text
    for text in (admin_metrics, mcp_metrics):
        assert "# TYPE stoa_link_mcp_tool_calls_total counter" in text
        assert "# TYPE stoa_link_decisions_total counter" in text


def test_mcp_disabled_takes_no_mcp_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with LinkThread(link_settings({"mcp.enabled": False, "mcp.port": port})) as link:
            assert link.runtime is not None and link.runtime.mcp is None
            assert httpx.get(f"{link.admin_url}/health/live", timeout=5).status_code == 200


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


async def test_a_busy_mcp_port_fails_start_and_releases_what_was_bound(busy_port: int) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        admin_port = probe.getsockname()[1]
    runtime = LinkRuntime(link_settings({"mcp.port": busy_port,
                                         "server.admin_address": f"127.0.0.1:{admin_port}"}))
    with pytest.raises(ConfigError) as err:
        await runtime.start()
    assert err.value.key == "mcp.port" and "already in use" in err.value.reason
    # The admin port it had bound first is free again, and nothing was started.
    with socket.socket() as again:
        again.bind(("127.0.0.1", admin_port))
    assert runtime.grpc is None and runtime.mcp is not None and runtime.mcp.port == 0  # nothing served
