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
import functools
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import mcp_types as types
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from link.backoff import Backoff
from link.jsonsafe import DEFAULT_MAX_DEPTH, value_depth_exceeds
from link.registry import Tool, ToolRegistry, ToolSet, ToolSetStatus
from link.registry.model import freeze
from mcp_server.callsessions import CallSession, CallSessionPool, StreamsTransport
from mcp_server.fedcontent import FederatedContent, federated_content
from mcp_server.gateway import ToolResult, error_result
from mcp_server.metrics import TOOLSETS_CONNECTED
from mcp_server.relay import CALL_CONTEXT, CallRelay, RelayLimits
from mcp_server.secrets import SecretError, SecretStore

__all__ = ["ToolSetFederation", "federated_tools"]

_log = logging.getLogger("stoa.mcp.federation")

# Opens the client transport for a ToolSet (swappable in tests).
TransportFactory = Callable[[ToolSet, dict[str, str]], AbstractAsyncContextManager[Any]]
_MAX_PAGES = 100
_HANDSHAKE_S = 5.0  # opening a call's own upstream session, on top of the ToolSet's timeout
MAX_WATCHED_PER_TOOLSET = 256  # upstream resource subscriptions Link holds for its clients, per ToolSet


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
    pool: CallSessionPool | None = None  # sessions for calls; never the discovery session
    content: FederatedContent = field(default_factory=FederatedContent)
    # URIs Link subscribed to on the discovery session for its clients (renewed on every reconnect).
    watched: set[str] = field(default_factory=set)

    def drop_call_sessions(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None


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
        max_json_depth: int = DEFAULT_MAX_DEPTH,
        relay_limits: RelayLimits | None = None,
        idle_call_sessions: int = 4,
    ) -> None:
        self._idle_sessions = idle_call_sessions
        self._max_depth = max_json_depth
        self._relay_limits = relay_limits or RelayLimits()
        self._registry = registry
        self._secrets = secrets
        # Reconnect pacing of each ToolSet; no delay is ever over backoff_max_s.
        self._backoff_bounds = (min(backoff_initial_s, backoff_max_s), backoff_max_s)
        self._ping_interval = ping_interval_s
        self._transport = transport_factory
        self._links: dict[tuple[str, str], _Link] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None
        # Where an upstream's notifications/resources/updated for a watched URI goes: (tenant, toolset, uri).
        self.on_resource_updated: Callable[[str, str, str], Awaitable[None]] | None = None
        # Whether a client still watches (tenant, toolset, uri): a reconnect renews only those.
        self.is_watched: Callable[[str, str, str], bool] | None = None

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

    def call_sessions_opened(self, tenant: str, name: str) -> int:
        """Upstream sessions opened for calls of a ToolSet since its pool was (re)made."""
        link = self._links.get((tenant, name))
        return link.pool.opened if link is not None and link.pool is not None else 0

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
        link.drop_call_sessions()
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
        backoff = Backoff(*self._backoff_bounds)
        while True:
            try:
                await self._session(link)
                backoff.reset()
            except Exception as exc:  # ExceptionGroups from anyio included; cancellation is not caught
                message = _describe(exc)
                _log.warning("toolset %s/%s: %s", link.toolset.tenant, link.toolset.name, message)
                self._publish(link, [], connected=False, error=message)
                link.drop_call_sessions()  # the upstream went away: idle call sessions are stale
            link.client = None
            await asyncio.sleep(backoff.next_delay())

    async def _session(self, link: _Link) -> None:
        toolset = link.toolset
        try:
            headers = self._headers(toolset)
        except SecretError as exc:
            raise ConnectionError(str(exc)) from None

        async def on_message(message: Any) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                link.refresh.set()
            elif isinstance(message, types.ResourceUpdatedNotification):
                uri = str(message.params.uri)
                if uri in link.watched and self.on_resource_updated is not None:
                    await self.on_resource_updated(toolset.tenant, toolset.name, uri)
            elif isinstance(message, Exception):
                link.broken.set()

        link.broken.clear()
        async with self._transport(toolset, headers) as transport_streams:
            client = Client(StreamsTransport(transport_streams), mode="legacy", message_handler=on_message,
                            read_timeout_seconds=toolset.upstream.timeout_s, cache=None)
            async with client:
                link.client = client
                await self._discover(link, client)
                await self._resubscribe(link, client)
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
        await self._discover_content(link, client)
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
                await self._drop_abandoned(link)

    async def _drop_abandoned(self, link: _Link) -> None:
        """Upstream subscriptions whose last client went away without unsubscribing: drop them.

        A client that unsubscribes releases at once (:meth:`unwatch_resource`); one whose connection
        just ended leaves nothing behind but a collected connection, found here at the next ping.
        """
        still = self.is_watched
        if still is None:
            return
        tenant, name = link.toolset.tenant, link.toolset.name
        for uri in sorted(link.watched):
            if not still(tenant, name, uri):
                await self.unwatch_resource(tenant, name, uri)

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
        """Forward one call on its own upstream session, relaying to the calling client.

        The shared session only discovers tools: a call never runs on it. It leases an upstream
        session of its own (see :mod:`mcp_server.callsessions`), so whatever one call provokes (a
        sampling request, garbage, a stall, a closed stream) ends that session and is that caller's
        error, never the ToolSet's.
        """
        link = self._links.get((tool.tenant, tool.toolset))
        if link is None or not link.status.connected:
            return error_result(f"toolset {tool.toolset!r} is not connected", 503, "toolset_unavailable")
        toolset = link.toolset
        try:
            headers = self._headers(toolset)
        except SecretError as exc:
            return error_result(str(exc), 502, "secret")
        relay = CallRelay(CALL_CONTEXT.get(), self._relay_limits)
        pool = self._pool(link, headers)
        start = time.perf_counter()
        session: CallSession | None = None
        try:
            # The handshake and the call share one bound; the call's own read timeout is inside it.
            async with asyncio.timeout(toolset.upstream.timeout_s + _HANDSHAKE_S):
                session = await pool.lease()
                result = await session.call(tool.remote_name, arguments, relay)
        except TimeoutError:
            return error_result("the federated server did not answer in time", 504, "timeout")
        except MCPError as exc:
            return error_result(f"the federated server refused the call: {exc.error.message}", 502,
                                "upstream_error")
        except Exception as exc:  # this call's session failed; nothing shared is touched
            cause = _describe(exc)
            if isinstance(_innermost(exc), TimeoutError):
                return error_result("the federated server did not answer in time", 504, "timeout")
            return error_result(f"the federated server failed: {cause}", 502, "upstream_error")
        finally:
            if session is not None:
                pool.give_back(session)
        wire = result.model_dump(by_alias=True, exclude_none=True, mode="json")
        if value_depth_exceeds(wire, self._max_depth):
            # The SDK's parser allows deeper documents than ours; an upstream answer is untrusted input.
            return error_result(f"the federated server answered with JSON nested deeper than {self._max_depth} "
                                "levels", 502, "upstream_invalid")
        return ToolResult(
            content=list(wire.get("content") or []),
            is_error=bool(wire.get("isError")),
            structured=wire.get("structuredContent"),
            status=200,
            backend_s=time.perf_counter() - start,
            reason="upstream_tool_error" if wire.get("isError") else "",
        )

    def _pool(self, link: _Link, headers: dict[str, str]) -> CallSessionPool:
        if link.pool is None:
            toolset = link.toolset
            link.pool = CallSessionPool(lambda: self._transport(toolset, headers), toolset.upstream.timeout_s,
                                        max_idle=self._idle_sessions)
        return link.pool

    # -- resources and prompts -------------------------------------------------------------------------
    def _connected(self, tenant: str, toolset: str | None = None) -> list[_Link]:
        """The tenant's connected sets (only ``toolset`` when given, e.g. for a virtual server)."""
        return sorted((lk for (t, n), lk in self._links.items()
                       if t == tenant and lk.status.connected and toolset in (None, n)),
                      key=lambda lk: lk.toolset.name)

    def resources(self, tenant: str, toolset: str | None = None) -> list[dict[str, Any]]:
        """The tenant's federated resources (``resources/list`` entries; a URI once, first set wins)."""
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for link in self._connected(tenant, toolset):
            for r in link.content.resources:
                if r.get("uri") not in seen:
                    seen.add(str(r.get("uri")))
                    out.append(r)
        return out

    def resource_templates(self, tenant: str, toolset: str | None = None) -> list[dict[str, Any]]:
        """The tenant's federated resource templates (``resources/templates/list`` entries)."""
        return [t for link in self._connected(tenant, toolset) for t in link.content.templates]

    def prompts(self, tenant: str, toolset: str | None = None) -> list[dict[str, Any]]:
        """The tenant's federated prompts (``prompts/list`` entries, renamed with the set's prefix)."""
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for link in self._connected(tenant, toolset):
            for p in link.content.prompts:
                if p["name"] not in seen:
                    seen.add(p["name"])
                    out.append(p)
        return out

    async def read_resource(self, tenant: str, uri: str, toolset: str | None = None) -> dict[str, Any] | None:
        """``resources/read`` of a federated resource; None when no set of the tenant has ``uri``.

        Raises :class:`MCPError` with the upstream's error, or when the upstream fails.
        """
        for link in self._connected(tenant, toolset):
            if link.content.has_resource(uri):
                result = await self._request(link, lambda c: c.read_resource(uri))
                return _result_wire(result)
        return None

    async def get_prompt(self, tenant: str, name: str, arguments: Mapping[str, str] | None,
                         toolset: str | None = None) -> dict[str, Any] | None:
        """``prompts/get`` of a federated prompt by its exposed name; None when no set has it."""
        for link in self._connected(tenant, toolset):
            remote = link.content.prompt_names.get(name)
            if remote is not None:
                args = {str(k): str(v) for k, v in (arguments or {}).items()}
                result = await self._request(link, functools.partial(_get_prompt, name=remote, arguments=args))
                return _result_wire(result)
        return None

    async def complete(self, tenant: str, ref: Mapping[str, Any], argument: str, value: str,
                       toolset: str | None = None) -> dict[str, Any] | None:
        """``completion/complete`` of a federated prompt (by its exposed name) or resource template; None
        when no set of the tenant has it. An upstream without completions answers no values."""
        for link in self._connected(tenant, toolset):
            target: types.PromptReference | types.ResourceTemplateReference | None = None
            if ref.get("type") == "ref/prompt":
                remote = link.content.prompt_names.get(str(ref.get("name", "")))
                if remote is not None:
                    target = types.PromptReference(type="ref/prompt", name=remote)
            else:
                uri = str(ref.get("uri", ""))
                if any(t.get("uriTemplate") == uri for t in link.content.templates) or link.content.has_resource(uri):
                    target = types.ResourceTemplateReference(type="ref/resource", uri=uri)
            if target is None:
                continue
            try:
                result = await self._request(link, functools.partial(
                    _complete, ref=target, argument={"name": argument, "value": value}))
            except MCPError as exc:
                if exc.error.code == types.METHOD_NOT_FOUND:
                    return {"completion": {"values": [], "total": 0, "hasMore": False}}
                raise
            return _result_wire(result)
        return None

    # -- resource subscriptions -------------------------------------------------------------------------
    async def watch_resource(self, tenant: str, uri: str, toolset: str | None = None) -> str | None:
        """Subscribe upstream to ``uri`` on behalf of Link's clients (once per URI and set).

        The subscription lives on the set's discovery session, the one that receives the upstream's
        notifications. Returns the name of the set serving ``uri`` (None when no set of the tenant has
        it); raises :class:`MCPError` when the upstream refuses or over the per-set bound.
        """
        for link in self._connected(tenant, toolset):
            if not link.content.has_resource(uri):
                continue
            if uri not in link.watched:
                client = link.client
                if client is None:
                    raise MCPError(types.INTERNAL_ERROR, "the federated server is not connected")
                if len(link.watched) >= MAX_WATCHED_PER_TOOLSET:
                    raise MCPError(types.INVALID_REQUEST, "too many resource subscriptions on this ToolSet")
                try:
                    async with asyncio.timeout(link.toolset.upstream.timeout_s):
                        await _subscribe(client, uri)
                except TimeoutError:
                    raise MCPError(types.REQUEST_TIMEOUT, "the federated server did not answer in time") from None
                link.watched.add(uri)
            return link.toolset.name
        return None

    async def unwatch_resource(self, tenant: str, toolset: str, uri: str) -> None:
        """Drop Link's upstream subscription to ``uri`` (no client watches it any more); best effort."""
        link = self._links.get((tenant, toolset))
        if link is None or uri not in link.watched:
            return
        link.watched.discard(uri)
        client = link.client
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(link.toolset.upstream.timeout_s):
                    await _unsubscribe(client, uri)

    async def _resubscribe(self, link: _Link, client: Client) -> None:
        """A new discovery session: renew the subscriptions Link's clients hold (a refused one is dropped)."""
        still = self.is_watched
        for uri in sorted(link.watched):
            if not link.content.has_resource(uri) or (
                    still is not None and not still(link.toolset.tenant, link.toolset.name, uri)):
                link.watched.discard(uri)
                continue
            try:
                await _subscribe(client, uri)
            except MCPError:
                link.watched.discard(uri)

    async def _request(self, link: _Link, request: Callable[[Client], Any]) -> Any:
        try:
            headers = self._headers(link.toolset)
        except SecretError as exc:
            raise MCPError(types.INTERNAL_ERROR, str(exc)) from None
        pool = self._pool(link, headers)
        session: CallSession | None = None
        try:
            async with asyncio.timeout(link.toolset.upstream.timeout_s + _HANDSHAKE_S):
                session = await pool.lease()
                return await session.run(request, CallRelay(CALL_CONTEXT.get(), self._relay_limits))
        except MCPError:
            raise
        except TimeoutError:
            raise MCPError(types.REQUEST_TIMEOUT, "the federated server did not answer in time") from None
        except Exception as exc:
            raise MCPError(types.INTERNAL_ERROR, f"the federated server failed: {_describe(exc)}") from None
        finally:
            if session is not None:
                pool.give_back(session)

    async def _discover_content(self, link: _Link, client: Client) -> None:
        """The upstream's resources, templates and prompts, when it offers them (never fatal for tools)."""
        caps = client.server_capabilities
        resources: list[types.Resource] = []
        templates: list[types.ResourceTemplate] = []
        prompts: list[types.Prompt] = []
        try:
            if caps.resources is not None:
                resources = (await client.list_resources(cache_mode="refresh")).resources
                templates = (await client.list_resource_templates(cache_mode="refresh")).resource_templates
            if caps.prompts is not None:
                prompts = (await client.list_prompts(cache_mode="refresh")).prompts
        except MCPError as exc:
            _log.info("toolset %s/%s: resources/prompts not listed: %s", link.toolset.tenant, link.toolset.name,
                      exc.error.message)
        link.content = federated_content(link.toolset, resources, templates, prompts)


async def _get_prompt(client: Client, *, name: str, arguments: dict[str, str]) -> types.GetPromptResult:
    return await client.get_prompt(name, arguments)


async def _complete(client: Client, *, ref: types.PromptReference | types.ResourceTemplateReference,
                    argument: dict[str, str]) -> types.CompleteResult:
    return await client.complete(ref, argument)


# resources/subscribe is a handshake-era request (the discovery session is one); the SDK marks it deprecated.
async def _subscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        await client.subscribe_resource(uri)


async def _unsubscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        await client.unsubscribe_resource(uri)


def _result_wire(result: Any) -> dict[str, Any]:
    wire: dict[str, Any] = result.model_dump(by_alias=True, exclude_none=True, mode="json")
    return wire




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


def _innermost(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    """A short cause for status and logs (unwrapping exception groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
