"""Run a whole Link process (LinkApp + gRPC + admin + MCP servers) in a background thread of the test process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from link.app import LinkApp
from link.runtime import LinkRuntime
from link.settings import Settings, load_settings

T = TypeVar("T")

# Test defaults: hermetic (no environment), dynamic ports, nothing written outside a temp dir.
TEST_DEFAULTS: dict[str, Any] = {
    "server.grpc_address": "127.0.0.1:0",
    "server.http_address": "127.0.0.1:0",
    "server.admin_address": "127.0.0.1:0",
    "server.shutdown_grace_s": 2.0,
    "metering.enabled": False,
    "snapshots.enabled": False,
    "registry.source": "none",
    "policy.enabled": False,
    "mcp.port": 0,  # sidecar mode serves MCP in the same process, on a free port here
}


def link_settings(overrides: dict[str, Any] | None = None, routes: list[dict[str, Any]] | None = None,
                  config_file: str | None = None) -> Settings:
    """Settings for a test: TEST_DEFAULTS, then ``overrides`` (dotted keys), then ``routes``."""
    merged = {**TEST_DEFAULTS, **(overrides or {})}
    if routes is not None:
        merged["routes"] = routes
    return load_settings(config_file, env={}, overrides=merged)


class LinkThread:
    """``with LinkThread(settings) as link: link.grpc_address, link.admin_url, link.app``"""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="link")
        self.runtime: LinkRuntime | None = None

    @property
    def app(self) -> LinkApp:
        assert self.runtime is not None
        return self.runtime.app

    @property
    def grpc_port(self) -> int:
        assert self.runtime is not None
        return self.runtime.grpc_port

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_address(self) -> str:
        """Where the HTTP decision server listens, as Envoy's cluster takes it (the Unix socket if set)."""
        assert self.runtime is not None and self.runtime.http is not None
        return self.runtime.http.addresses[0]

    def authz_options(self) -> dict[str, Any]:
        """The EnvoyOptions that point Envoy's ext_authz at this Link, over its configured transport."""
        from link.envoyconf.from_settings import envoy_options

        derived = envoy_options(self.settings)
        opts: dict[str, Any] = {"authz_transport": self.settings.server.authz_transport}
        for name in ("api_key_header", "identity_headers", "identity_header_prefix", "authz_request_headers",
                     "authz_upstream_headers", "authz_client_headers", "authz_body_prefixes"):
            opts[name] = getattr(derived, name)
        if self.settings.server.authz_transport == "http":
            opts["link_http"] = (self.http_address,)
        return opts

    @property
    def mcp_url(self) -> str:
        """The base URL of the MCP server this process serves (sidecar mode, ``mcp.enabled``)."""
        assert self.runtime is not None and self.runtime.mcp is not None
        return self.runtime.mcp.base_url

    @property
    def admin_url(self) -> str:
        assert self.runtime is not None
        return f"http://127.0.0.1:{self.runtime.admin_port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on Link's loop and wait for it."""
        fut: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def start(self) -> LinkThread:
        self._thread.start()

        async def _start() -> LinkRuntime:
            runtime = LinkRuntime(self.settings)
            await runtime.start()
            return runtime

        self.runtime = self.call(_start())
        return self

    def stop(self) -> None:
        if self.runtime is not None:
            try:
                self.call(self.runtime.stop(), timeout=30)
            finally:
                self.runtime = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def __enter__(self) -> LinkThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
