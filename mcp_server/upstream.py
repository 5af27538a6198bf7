"""Calling the HTTP endpoint behind a Tool.

Arguments map to the request as CONTRACTS.md says: ``{name}`` placeholders of
the endpoint take path arguments; the rest go to the query string for
GET/DELETE and to a JSON body otherwise. Static headers, the headers the
pipeline decided to add, and the tool's own authentication are applied; the
whole exchange is bounded by the tool's timeout. One pooled
``httpx.AsyncClient`` serves every tool (plus one per client certificate for
mTLS tools).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from link.model import Principal
from link.registry.model import Tool, endpoint_placeholders
from mcp_server.exchange import TokenExchangeError, TokenExchanger
from mcp_server.http1 import Http1Pool, PoolFull, ResponseTooLarge
from mcp_server.secrets import SERVICE_ACCOUNT_TOKEN, SecretError, SecretStore

__all__ = ["ArgumentError", "HttpToolInvoker", "UpstreamError", "UpstreamResponse", "build_request"]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Headers a tool call never forwards from its caller: hop-by-hop ones and credentials.
_USER_AGENT = "stoa-link-mcp"


class ArgumentError(Exception):
    """Arguments that cannot be placed in the upstream request (names the argument)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UpstreamError(Exception):
    """The upstream could not be reached or answered unusably; ``status`` is the gateway's status."""

    def __init__(self, kind: str, message: str, status: int) -> None:
        super().__init__(message)
        self.kind = kind  # timeout | connect | busy | secret | too_large | protocol | token_exchange_*
        self.status = status


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    body: bytes
    content_type: str
    elapsed_s: float


@dataclass(slots=True)
class PreparedRequest:
    method: str
    url: str
    params: list[tuple[str, str | int | float | bool | None]]
    headers: dict[str, str]
    content: bytes | None


def _scalar(value: Any, field: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if value is None:
        raise ArgumentError(field, "must not be null in the URL")
    raise ArgumentError(field, "must be a string, number or boolean to go in the URL")


def _query_params(args: Mapping[str, Any]) -> list[tuple[str, str | int | float | bool | None]]:
    params: list[tuple[str, str | int | float | bool | None]] = []
    for key, value in args.items():
        if value is None:
            continue
        if isinstance(value, list):
            params.extend((key, _scalar(v, key) if not isinstance(v, dict | list) else json.dumps(v))
                          for v in value)
        elif isinstance(value, dict):
            params.append((key, json.dumps(value, separators=(",", ":"))))
        else:
            params.append((key, _scalar(value, key)))
    return params


def build_request(
    tool: Tool,
    arguments: Mapping[str, Any],
    upstream_headers: Mapping[str, str],
    auth_headers: Mapping[str, str],
) -> PreparedRequest:
    """The upstream request for one call (pure: no I/O, easy to test)."""
    rest = dict(arguments)
    url = tool.endpoint
    for name in endpoint_placeholders(tool.endpoint):
        if name not in rest:
            raise ArgumentError(name, "required (it is part of the endpoint path)")
        url = url.replace("{" + name + "}", quote(_scalar(rest.pop(name), name), safe=""))
    headers = {"user-agent": _USER_AGENT, "accept": "application/json, */*;q=0.5"}
    headers.update({k.lower(): v for k, v in upstream_headers.items()})
    headers.update({k.lower(): v for k, v in tool.headers.items()})
    headers.update({k.lower(): v for k, v in auth_headers.items()})
    params: list[tuple[str, str | int | float | bool | None]] = []
    content: bytes | None = None
    if tool.method in _BODY_METHODS:
        content = json.dumps(rest, separators=(",", ":"), ensure_ascii=False).encode()
        headers["content-type"] = "application/json"
    else:
        params = _query_params(rest)
    return PreparedRequest(method=tool.method, url=url, params=params, headers=headers, content=content)


class HttpToolInvoker:
    """Sends tool calls upstream with pooled connections."""

    def __init__(
        self,
        secrets: SecretStore,
        *,
        max_connections: int = 200,
        max_response_bytes: int = 4 << 20,
        transport: httpx.AsyncBaseTransport | None = None,
        exchanger: TokenExchanger | None = None,
    ) -> None:
        self._secrets = secrets
        self._exchanger = exchanger
        self._max_response = max_response_bytes
        self._limits = httpx.Limits(max_connections=max_connections,
                                    max_keepalive_connections=max_connections)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._mtls_clients: dict[str, tuple[tuple[str, str], httpx.AsyncClient]] = {}
        self._pool: Http1Pool | None = None

    def _new_client(self, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
        return httpx.AsyncClient(limits=self._limits, transport=self._transport, follow_redirects=False,
                                 verify=verify, timeout=httpx.Timeout(30.0))

    def _fast_path(self, tool: Tool) -> Http1Pool | None:
        """The lean pool for plain-HTTP tools (unless a test transport replaces the network)."""
        if self._transport is not None or not tool.endpoint.startswith("http://") or tool.auth.type == "mtls":
            return None
        if self._pool is None:
            self._pool = Http1Pool(max_connections=self._limits.max_connections or 200,
                                   max_response_bytes=self._max_response)
        return self._pool

    def _client_for(self, tool: Tool) -> httpx.AsyncClient:
        if tool.auth.type == "mtls" and tool.auth.secret_ref:
            return self._mtls_client(tool.auth.secret_ref)
        if self._client is None:
            # Created lazily so it belongs to the event loop that uses it.
            self._client = self._new_client()
        return self._client

    def _mtls_client(self, secret_ref: str) -> httpx.AsyncClient:
        base = self._secrets.path(secret_ref)
        cert = self._secrets.read_file(base / "tls.crt", f"{secret_ref}/tls.crt")
        key = self._secrets.read_file(base / "tls.key", f"{secret_ref}/tls.key")
        hit = self._mtls_clients.get(secret_ref)
        if hit is not None and hit[0] == (cert, key):
            return hit[1]
        ctx = ssl.create_default_context()
        ca = base / "ca.crt"
        if ca.exists():
            ctx.load_verify_locations(cafile=str(ca))
        try:
            ctx.load_cert_chain(str(base / "tls.crt"), str(base / "tls.key"))
        except (OSError, ssl.SSLError):
            raise SecretError(f"secret {secret_ref!r}: tls.crt/tls.key are not a usable key pair") from None
        client = self._new_client(verify=ctx)
        if hit is not None:
            asyncio.get_running_loop().create_task(hit[1].aclose())
        self._mtls_clients[secret_ref] = ((cert, key), client)
        return client

    def auth_headers(self, tool: Tool, principal: Principal) -> dict[str, str]:
        """Credentials for the upstream per ``spec.auth``; raises SecretError."""
        auth = tool.auth
        out: dict[str, str] = {}
        if auth.type == "bearer" and auth.secret_ref:
            out[auth.header_name or "authorization"] = "Bearer " + self._secrets.read(auth.secret_ref)
        elif auth.type == "api_key" and auth.secret_ref:
            out[auth.header_name or "x-api-key"] = self._secrets.read(auth.secret_ref)
        elif auth.type == "service_account":
            token = (self._secrets.read(auth.secret_ref) if auth.secret_ref
                     else self._secrets.read_file(Path(SERVICE_ACCOUNT_TOKEN), "service account token"))
            out[auth.header_name or "authorization"] = "Bearer " + token
        # The caller's own token is never forwarded (MCP authorization): see mcp_server.exchange.
        return out

    async def invoke(
        self,
        tool: Tool,
        arguments: Mapping[str, Any],
        principal: Principal,
        upstream_headers: Mapping[str, str],
    ) -> UpstreamResponse:
        """Call the tool's endpoint; raises ArgumentError or UpstreamError."""
        try:
            auth = self.auth_headers(tool, principal)
            client = self._client_for(tool)
        except SecretError as exc:
            raise UpstreamError("secret", str(exc), 500) from None
        exchange = tool.auth.token_exchange
        if exchange is not None:
            if self._exchanger is None:
                raise UpstreamError("token_exchange_unconfigured", "token exchange is not available", 502)
            try:
                auth[exchange.header_name] = "Bearer " + await self._exchanger.token_for(principal, exchange)
            except TokenExchangeError as exc:
                raise UpstreamError(exc.kind, str(exc), exc.status) from None
        prepared = build_request(tool, arguments, upstream_headers, auth)
        pool = self._fast_path(tool)
        start = time.perf_counter()
        try:
            async with asyncio.timeout(tool.timeout_s):
                if pool is not None:
                    url = prepared.url
                    if prepared.params:
                        url += ("&" if "?" in url else "?") + urlencode(prepared.params)
                    raw = await pool.exchange(prepared.method, url, prepared.headers, prepared.content or b"")
                    status, body, content_type = raw.status, raw.body, raw.header(b"content-type")
                else:
                    request = client.build_request(
                        prepared.method, prepared.url, params=list(prepared.params) or None,
                        headers=prepared.headers, content=prepared.content,
                        timeout=httpx.Timeout(tool.timeout_s),
                    )
                    response = await client.send(request, stream=True)
                    try:
                        body = await self._read_capped(response)
                    finally:
                        await response.aclose()
                    status, content_type = response.status_code, response.headers.get("content-type", "")
        except PoolFull as exc:
            raise UpstreamError("busy", f"the upstream is busy ({exc})", 503) from None
        except ResponseTooLarge:
            raise UpstreamError("too_large", f"the upstream answer is larger than {self._max_response} bytes",
                                502) from None
        except (TimeoutError, httpx.TimeoutException):
            message = f"the upstream did not answer within {tool.timeout_s:g}s"
            raise UpstreamError("timeout", message, 504) from None
        except httpx.HTTPError as exc:
            message = f"the upstream could not be reached ({type(exc).__name__})"
            raise UpstreamError("connect", message, 502) from None
        return UpstreamResponse(status=status, body=body, content_type=content_type,
                                elapsed_s=time.perf_counter() - start)

    async def _read_capped(self, response: httpx.Response) -> bytes:
        message = f"the upstream answer is larger than {self._max_response} bytes"
        too_large = UpstreamError("too_large", message, 502)
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_response:
            raise too_large
        chunks = bytearray()
        async for chunk in response.aiter_bytes():
            chunks += chunk
            if len(chunks) > self._max_response:
                raise too_large
        return bytes(chunks)

    async def aclose(self) -> None:
        if self._exchanger is not None:
            await self._exchanger.aclose()
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        for _, client in self._mtls_clients.values():
            await client.aclose()
        self._mtls_clients.clear()
