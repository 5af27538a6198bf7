"""``stoa-link mcp --login --url URL``: a person signs in once, so the stdio bridge can refresh alone.

The authorization code flow with PKCE for a public client (``STOA_MCP_CLIENT_ID`` without a
secret), with the redirect to a loopback listener on a port of the moment (RFC 8252 §7.3): the
command prints the authorization URL on stderr and opens the browser (``BROWSER`` is honoured),
waits (bounded) for the one redirect, exchanges the code and leaves the tokens, a refresh token
among them, in the bridge's token cache. Run it in a terminal with the same environment the
desktop client gives the bridge; when the refresh token is refused, the bridge's error says to run
it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import webbrowser
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2

from mcp_server.bridge_oauth import OAuthClient, OAuthConfigError, SignInError, TokenSource

__all__ = ["LoopbackRedirect", "run_login"]

_CALLBACK = "/callback"
_MAX_REQUEST_BYTES = 16 * 1024
_PAGE = b"<!doctype html><title>STOA Link</title><p>%s You can close this window.</p>"


class LoopbackRedirect:
    """A one-shot HTTP listener on 127.0.0.1 that receives the authorization server's redirect."""

    def __init__(self) -> None:
        self._answer: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        self._server: asyncio.Server | None = None
        self.redirect_uri = ""

    async def start(self) -> LoopbackRedirect:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.redirect_uri = f"http://127.0.0.1:{port}{_CALLBACK}"
        return self

    async def answer(self) -> dict[str, str]:
        """The query of the first redirect to arrive (only the callback path counts)."""
        return await asyncio.shield(self._answer)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        status, text = 404, b"Not the sign-in address."
        if len(head) <= _MAX_REQUEST_BYTES:
            method, _, rest = head.decode("latin-1").partition(" ")
            target = rest.partition(" ")[0]
            parts = urlsplit(target)
            if method == "GET" and parts.path == _CALLBACK:
                if self._answer.done():
                    status, text = 410, b"This sign-in is already complete."
                else:
                    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                    self._answer.set_result(query)
                    status, text = 200, (b"Signed in to STOA Link." if "code" in query else b"Sign-in refused.")
        body = _PAGE % text
        writer.write(b"HTTP/1.1 %d X\r\ncontent-type: text/html\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                     % (status, len(body)) + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


async def _login(url: str, client: OAuthClient, open_browser: Callable[[str], object], wait_s: float) -> int:
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(10.0), follow_redirects=False) as http:
        source = TokenSource(client, url, http)
        listener = await LoopbackRedirect().start()
        loop = asyncio.get_running_loop()

        async def authorize(authorization_url: str) -> Mapping[str, str]:
            print(f"stoa-link mcp --login: sign in at\n  {authorization_url}", file=sys.stderr, flush=True)
            # A browser command may only return once the page is closed: never wait for it here.
            loop.run_in_executor(None, open_browser, authorization_url)
            with anyio.fail_after(wait_s):
                return await listener.answer()

        try:
            await source.sign_in(listener.redirect_uri, authorize)
        except SignInError as exc:
            print(f"stoa-link mcp --login: {exc}", file=sys.stderr)
            return 1
        except TimeoutError:
            print(f"stoa-link mcp --login: no sign-in arrived within {wait_s:.0f} s", file=sys.stderr)
            return 1
        finally:
            listener.close()
    where = f"cached in {client.cache}" if client.cache is not None else "not cached (STOA_MCP_TOKEN_CACHE=off)"
    print(f"stoa-link mcp --login: signed in; tokens {where}", file=sys.stderr)
    return 0


def run_login(url: str, *, env: Mapping[str, str] | None = None,
              open_browser: Callable[[str], object] = webbrowser.open, wait_s: float = 300.0) -> int:
    """Sign in for ``url``; the exit code (0 signed in, 1 refused or abandoned, 2 bad settings)."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    try:
        client = OAuthClient.from_env(os.environ if env is None else env)
    except OAuthConfigError as exc:
        print(f"stoa-link mcp --login: {exc}", file=sys.stderr)
        return 2
    if client is None or client.client_secret is not None:
        print("stoa-link mcp --login: STOA_MCP_CLIENT_ID: required, without a secret (a public client; "
              "a client with a secret needs no sign-in)", file=sys.stderr)
        return 2
    if client.cache is None:
        print("stoa-link mcp --login: STOA_MCP_TOKEN_CACHE: off, so the bridge could not use the sign-in",
              file=sys.stderr)
        return 2
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        print(f"stoa-link mcp --login: --url: expected the http(s) URL of a STOA Link MCP endpoint, got {url!r}",
              file=sys.stderr)
        return 2
    try:
        return asyncio.run(_login(url, client, open_browser, wait_s))
    except KeyboardInterrupt:
        return 130
