"""``stoa-link mcp --stdio --url https://…/mcp``: a local stdio MCP client talks to a remote STOA Link.

Desktop clients (Claude Desktop and the like) launch MCP servers as processes
and speak newline-delimited JSON-RPC on stdin/stdout. This bridge is such a
process: every message from stdin goes to the remote endpoint over Streamable
HTTP, every message from there (responses, notifications, server-to-client
requests such as sampling or elicitation) goes to stdout, unchanged. The SDK's
stdio and Streamable HTTP transports do the framing, sessions and SSE; the
bridge only relays, so it stays correct as the protocol grows.

stdout is the protocol: logs and errors go to stderr only. Credentials come
from the environment, never from the command line, where other local users
could read them: a bearer token (``STOA_MCP_TOKEN`` by default), or an OAuth
client (``STOA_MCP_CLIENT_ID`` and a secret) for which the bridge gets, caches
and renews tokens itself (:mod:`mcp_server.bridge_oauth`). The bridge ends
cleanly when stdin closes (the session is terminated at the server).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp.client.streamable_http import streamable_http_client
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp.types import CONNECTION_CLOSED, ErrorData, JSONRPCError, JSONRPCRequest, JSONRPCResponse

from mcp_server.bridge_oauth import (
    CLIENT_ID_ENV,
    BearerAuth,
    OAuthClient,
    OAuthConfigError,
    TokenSource,
)

__all__ = ["TOKEN_ENV", "BridgeError", "run_stdio_bridge"]

TOKEN_ENV = "STOA_MCP_TOKEN"
_log = logging.getLogger("stoa.link.stdio")
# The SDK's stand-in text for an HTTP error without a JSON-RPC body: replaced by what really happened.
_GENERIC = ("Server returned an error response",)


class BridgeError(Exception):
    """The bridge cannot start (a bad URL, a token variable that is set but empty)."""


@dataclass(slots=True)
class _HttpOutcomes:
    """HTTP statuses seen per JSON-RPC request id, to turn bare HTTP failures into readable errors."""

    url: str
    advice: str = f"set {TOKEN_ENV} to a valid bearer token"
    # Why the bridge's own OAuth client has no token (None: it has one, or there is no such client).
    oauth_failure: Callable[[], str | None] = lambda: None
    by_id: dict[Any, tuple[int, str]] = field(default_factory=dict)
    refused: bool = False

    async def on_response(self, response: httpx2.Response) -> None:
        if response.request.method != "POST" or (response.status_code < 400 and not self.by_id):
            return
        try:
            rid = json.loads(response.request.content).get("id")
        except (ValueError, AttributeError):
            return
        if rid is None:
            return
        if response.status_code < 400:
            self.by_id.pop(rid, None)  # answered after all (e.g. retried with a renewed token)
        else:
            self.by_id[rid] = (response.status_code, response.headers.get("www-authenticate", ""))

    def explain(self, message: SessionMessage) -> SessionMessage:
        """A generic HTTP error answer made readable (refused token, wrong path); others pass unchanged."""
        msg = message.message
        if not isinstance(msg, JSONRPCError):
            return message
        seen = self.by_id.pop(msg.id, None)
        if seen is None:
            if "connect" in msg.error.message.lower() or "closed" in msg.error.message.lower():
                _log.error("stoa-link mcp --stdio: %s: %s", self.url, msg.error.message)
            return message
        status, challenge = seen
        if status in (401, 403):
            self.refused = True
            failure = self.oauth_failure()
            if failure is not None:
                text = f"STOA Link at {self.url} refused the request (HTTP {status}): no token, {failure}"
            else:
                text = (f"STOA Link at {self.url} refused the token (HTTP {status}); {self.advice}"
                        + (f" ({challenge})" if challenge else ""))
        elif msg.error.message in _GENERIC or status == 404:
            text = f"STOA Link at {self.url} answered HTTP {status}: {msg.error.message}; check --url"
        else:
            return message
        _log.error("stoa-link mcp --stdio: %s", text)
        data = {"httpStatus": status, "url": self.url}
        error = ErrorData(code=msg.error.code, message=text, data=data)
        return SessionMessage(JSONRPCError(jsonrpc="2.0", id=msg.id, error=error))


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BridgeError(f"--url: expected the http(s) URL of a STOA Link MCP endpoint, got {url!r}")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        _log.warning("stoa-link mcp --stdio: %s is plain http: the token travels unencrypted", url)


def _headers(env: Mapping[str, str], token_env: str) -> dict[str, str]:
    token = env.get(token_env)
    if token is None:
        return {}
    if env.get(CLIENT_ID_ENV):
        raise BridgeError(f"{token_env} and {CLIENT_ID_ENV}: set one, not both")
    token = token.strip()
    if not token or any(c in token for c in "\r\n"):
        raise BridgeError(f"{token_env}: set but empty or not a single line")
    return {"authorization": f"Bearer {token}"}


def _reason(exc: BaseException) -> str:
    """The innermost cause of a transport failure, in a line (exception groups flattened)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _relay(url: str, headers: dict[str, str], client: OAuthClient | None, stdin: Any,
                 stdout: Any) -> int:
    outcomes = _HttpOutcomes(url)
    pending: set[Any] = set()  # ids of client requests not answered yet
    timeout = httpx2.Timeout(30.0, read=300.0)  # a tool call may stream for minutes
    # The authorization server is asked on its own client: its requests never carry the bearer token.
    oauth_http = httpx2.AsyncClient(timeout=httpx2.Timeout(10.0), follow_redirects=False)
    auth: BearerAuth | None = None
    if client is not None:
        source = TokenSource(client, url, oauth_http)
        auth = BearerAuth(source)
        outcomes.advice = f"check {CLIENT_ID_ENV} and its secret"
        outcomes.oauth_failure = lambda: source.last_failure
    http = httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth,
                              event_hooks={"response": [outcomes.on_response]})
    async with oauth_http, http, stdio_server(stdin, stdout) as (local_in, local_out), local_out:
        # (leaving closes local_out: the stdio writer ends, so stdio_server can return)
        try:
            async with streamable_http_client(url, http_client=http) as (remote_in, remote_out):

                async def up(done: anyio.CancelScope) -> None:
                    async for item in local_in:
                        if isinstance(item, Exception):
                            # A line that is not JSON-RPC has no id to answer: say so where a human looks.
                            _log.error("stoa-link mcp --stdio: ignored a line from the client: %s", item)
                            continue
                        if isinstance(item.message, JSONRPCRequest):
                            pending.add(item.message.id)
                        await remote_out.send(item)
                    done.cancel()  # stdin closed: the client is gone

                async def down() -> None:
                    async for item in remote_in:
                        if isinstance(item, Exception):
                            _log.error("stoa-link mcp --stdio: from %s: %s", url, item)
                            continue
                        if isinstance(item.message, JSONRPCResponse | JSONRPCError):
                            pending.discard(item.message.id)
                        await local_out.send(outcomes.explain(item))

                with anyio.CancelScope() as scope:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(up, scope)
                        tg.start_soon(down)
        except Exception as exc:  # the remote cannot be reached: answer what waits, then stop
            text = f"cannot reach STOA Link at {url}: {_reason(exc)}"
            _log.error("stoa-link mcp --stdio: %s", text)
            error = ErrorData(code=CONNECTION_CLOSED, message=text, data={"url": url})
            for rid in sorted(pending, key=str):
                await local_out.send(SessionMessage(JSONRPCError(jsonrpc="2.0", id=rid, error=error)))
            # Keep answering until the client lets go: a client that retries must not wait forever.
            async for item in local_in:
                if not isinstance(item, Exception) and isinstance(item.message, JSONRPCRequest):
                    await local_out.send(SessionMessage(JSONRPCError(jsonrpc="2.0", id=item.message.id, error=error)))
            return 1
    return 1 if outcomes.refused else 0


def run_stdio_bridge(url: str, *, token_env: str = TOKEN_ENV, stdin: Any = None, stdout: Any = None) -> int:
    """Run the bridge until stdin closes; returns the exit code (2 bad arguments, 1 token refused)."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    try:
        _check_url(url)
        headers = _headers(os.environ, token_env)
        client = OAuthClient.from_env(os.environ)
    except (BridgeError, OAuthConfigError) as exc:
        print(f"stoa-link mcp --stdio: {exc}", file=sys.stderr)
        return 2
    try:
        return anyio.run(_relay, url, headers, client, stdin, stdout)
    except KeyboardInterrupt:
        return 130
