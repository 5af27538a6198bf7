"""ToolSet federation: tools of upstream MCP servers, served under a tenant.

One task per ToolSet keeps a client session to the upstream (Streamable HTTP
or SSE, with the SDK's client), lists its tools, renames the selected ones
(``prefix``, ``alias``) and hands them to the registry as federated tools.
It re-lists every ``refreshInterval`` and when the upstream announces
``notifications/tools/list_changed``, pings in between, and when the upstream
goes away removes the tools (status ``connected: false``) and reconnects with
exponential backoff. Calls to a federated tool are forwarded on the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import mcp_types as types
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from link.registry import Tool, ToolRegistry, ToolSet, ToolSetStatus
from link.registry.model import freeze
from mcp_server.gateway import ToolResult, error_result
from mcp_server.metrics import TOOLSETS_CONNECTED
from mcp_server.secrets import SecretError, SecretStore

__all__ = ["ToolSetFederation", "federated_tools"]

_log = logging.getLogger("stoa.mcp.federation")

# Opens the client transport for a ToolSet (swappable in tests).
TransportFactory = Callable[[ToolSet, dict[str, str]], AbstractAsyncContextManager[Any]]
_MAX_PAGES = 100


def _default_transport(toolset: ToolSet, headers: dict[str, str]) -> AbstractAsyncContextManager[Any]:
    up = toolset.upstream
    if up.transport == "sse":
        return sse_client(up.url, headers=headers, timeout=up.timeout_s, sse_read_timeout=300.0)
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(up.timeout_s, read=300.0))
    return _owning(http, streamable_http_client(up.url, http_client=http))


@contextlib.asynccontextmanager
async def _owning(http: httpx2.AsyncClient, inner: AbstractAsyncContextManager[Any]) -> Any:
    async with http, inner as streams:
        yield streams


def federated_tools(toolset: ToolSet, remote: list[types.Tool]) -> list[Tool]:
    """The upstream's tools the set selects, renamed, as registry tools of the set's tenant."""
    out: list[Tool] = []
    for t in remote:
        exposed = toolset.exposed_name(t.name)
        if exposed is None:
            continue
        wire = t.model_dump(by_alias=True, exclude_none=True, mode="json")
        annotations = wire.get("annotations") or {}
        out.append(Tool(
            tenant=toolset.tenant,
            name=exposed,
            display_name=wire.get("title") or annotations.get("title") or t.name,
            description=t.description or t.name,
            endpoint=toolset.upstream.url,
            method="POST",
            input_schema=freeze(wire.get("inputSchema") or {"type": "object"}),
            output_schema=freeze(wire["outputSchema"]) if wire.get("outputSchema") else None,
            timeout_s=toolset.upstream.timeout_s,
            annotations=freeze(annotations),
            generation=toolset.generation,
            toolset=toolset.name,
            remote_name=t.name,
        ))
    return out


@dataclass(slots=True)
class _Link:
    """The live state of one ToolSet's upstream connection."""

    toolset: ToolSet
    task: asyncio.Task[None] | None = None
    client: Client | None = None
    refresh: asyncio.Event = field(default_factory=asyncio.Event)
    broken: asyncio.Event = field(default_factory=asyncio.Event)
    status: ToolSetStatus = field(default_factory=ToolSetStatus)


class ToolSetFederation:
    """A component: connects every ToolSet of the registry and forwards calls."""

    name = "mcp-federation"

    def __init__(
        self,
        registry: ToolRegistry,
        secrets: SecretStore,
        *,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        ping_interval_s: float = 10.0,
        transport_factory: TransportFactory = _default_transport,
    ) -> None:
        self._registry = registry
        self._secrets = secrets
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._ping_interval = ping_interval_s
        self._transport = transport_factory
        self._links: dict[tuple[str, str], _Link] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._unsubscribe = self._registry.subscribe(self._on_change)
        self._reconcile()

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        links = list(self._links.values())
        self._links.clear()
        for link in links:
            await self._cancel(link)
        self._loop = None
        TOOLSETS_CONNECTED.set(0)

    def readiness(self) -> tuple[bool, str]:
        # An unreachable upstream is the upstream's problem, not a reason to stop serving other tools.
        up = sum(1 for link in self._links.values() if link.status.connected)
        return True, f"{up}/{len(self._links)} toolsets connected"

    def status(self, tenant: str, name: str) -> ToolSetStatus:
        link = self._links.get((tenant, name))
        return link.status if link is not None else ToolSetStatus()

    # -- following the registry -----------------------------------------------------------
    def _on_change(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            same = asyncio.get_running_loop() is loop
        except RuntimeError:
            same = False
        if same:
            self._reconcile()
        else:
            loop.call_soon_threadsafe(self._reconcile)

    def _reconcile(self) -> None:
        wanted = {ts.key: ts for ts in self._registry.toolsets()}
        for key in [k for k in self._links if k not in wanted]:
            gone = self._links.pop(key)
            asyncio.get_running_loop().create_task(self._cancel(gone))
        for key, toolset in wanted.items():
            link = self._links.get(key)
            if link is not None and _same_spec(link.toolset, toolset):
                link.toolset = toolset
                continue
            if link is not None:
                asyncio.get_running_loop().create_task(self._cancel(link))
            fresh = _Link(toolset=toolset)
            name = f"toolset-{key[0]}/{key[1]}"
            fresh.task = asyncio.get_running_loop().create_task(self._run(fresh), name=name)
            self._links[key] = fresh
        self._gauge()

    async def _cancel(self, link: _Link) -> None:
        if link.task is not None:
            link.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await link.task

    def _gauge(self) -> None:
        TOOLSETS_CONNECTED.set(sum(1 for link in self._links.values() if link.status.connected))

    # -- one ToolSet's life -------------------------------------------------------------------
    def _headers(self, toolset: ToolSet) -> dict[str, str]:
        auth = toolset.upstream.auth
        if auth.type == "none" or not auth.secret_ref:
            return {}
        secret = self._secrets.read(auth.secret_ref)
        if auth.type == "bearer":
            return {auth.header_name or "authorization": f"Bearer {secret}"}
        return {auth.header_name or "x-api-key": secret}

    async def _run(self, link: _Link) -> None:
        delay = self._backoff[0]
        while True:
            try:
                await self._session(link)
                delay = self._backoff[0]
            except Exception as exc:  # ExceptionGroups from anyio included; cancellation is not caught
                message = _describe(exc)
                _log.warning("toolset %s/%s: %s", link.toolset.tenant, link.toolset.name, message)
                self._publish(link, [], connected=False, error=message)
            link.client = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    async def _session(self, link: _Link) -> None:
        toolset = link.toolset
        try:
            headers = self._headers(toolset)
        except SecretError as exc:
            raise ConnectionError(str(exc)) from None

        async def on_message(message: Any) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                link.refresh.set()
            elif isinstance(message, Exception):
                link.broken.set()

        link.broken.clear()
        async with self._transport(toolset, headers) as transport_streams:
            client = Client(_Streams(transport_streams), mode="legacy", message_handler=on_message,
                            read_timeout_seconds=toolset.upstream.timeout_s, cache=None)
            async with client:
                link.client = client
                await self._discover(link, client)
                await self._follow(link, client)

    async def _discover(self, link: _Link, client: Client) -> None:
        remote: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            remote.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        self._publish(link, federated_tools(link.toolset, remote), connected=True, error="",
                      discovered=[t.name for t in remote])

    async def _follow(self, link: _Link, client: Client) -> None:
        """Until the upstream breaks: re-list on schedule or on its notification, ping in between."""
        next_refresh = time.monotonic() + link.toolset.refresh_interval_s
        while True:
            link.refresh.clear()
            wait = max(0.0, min(self._ping_interval, next_refresh - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await _first(link.refresh.wait(), link.broken.wait())
            if link.broken.is_set():
                raise ConnectionError("the upstream connection broke")
            if link.refresh.is_set() or time.monotonic() >= next_refresh:
                await self._discover(link, client)
                next_refresh = time.monotonic() + link.toolset.refresh_interval_s
            else:
                async with asyncio.timeout(link.toolset.upstream.timeout_s):
                    # The session's ping: the connection is a handshake-era one (mode "legacy").
                    await client.session.send_ping()

    def _publish(self, link: _Link, tools: list[Tool], *, connected: bool, error: str,
                 discovered: list[str] | None = None) -> None:
        link.status = ToolSetStatus(
            connected=connected, tool_count=len(tools), discovered_tools=tuple(discovered or ()),
            last_sync=time.time() if connected else link.status.last_sync, error=error,
        )
        self._registry.set_federated(link.toolset.tenant, link.toolset.name, tools, link.status)
        self._gauge()

    # -- calls ---------------------------------------------------------------------------------------
    async def call(self, tool: Tool, arguments: Mapping[str, Any]) -> ToolResult:
        link = self._links.get((tool.tenant, tool.toolset))
        client = link.client if link is not None else None
        if link is None or client is None or not link.status.connected:
            return error_result(f"toolset {tool.toolset!r} is not connected", 503, "toolset_unavailable")
        start = time.perf_counter()
        try:
            result = await client.call_tool(tool.remote_name, dict(arguments),
                                             read_timeout_seconds=link.toolset.upstream.timeout_s)
        except TimeoutError:
            return error_result("the federated server did not answer in time", 504, "timeout")
        except Exception as exc:  # the session broke mid-call: report it and reconnect
            link.broken.set()
            return error_result(f"the federated server failed: {_describe(exc)}", 502, "upstream_error")
        wire = result.model_dump(by_alias=True, exclude_none=True, mode="json")
        return ToolResult(
            content=list(wire.get("content") or []),
            is_error=bool(wire.get("isError")),
            structured=wire.get("structuredContent"),
            status=200,
            backend_s=time.perf_counter() - start,
            reason="upstream_tool_error" if wire.get("isError") else "",
        )


class _Streams:
    """Wraps already-open transport streams as the Transport the SDK client enters."""

    def __init__(self, streams: Any) -> None:
        self._streams = streams

    async def __aenter__(self) -> Any:
        return self._streams

    async def __aexit__(self, *exc: object) -> None:
        return None


async def _first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


def _same_spec(a: ToolSet, b: ToolSet) -> bool:
    return (a.upstream, a.tools, a.prefix, a.refresh_interval_s) == (b.upstream, b.tools, b.prefix,
                                                                     b.refresh_interval_s)


def _describe(exc: BaseException) -> str:
    """A short cause for status and logs (unwrapping exception groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
