"""The HTTP layer in front of every MCP transport: authenticate the caller once per request.

For paths under ``/mcp`` the middleware turns the HTTP request into Link's
own :class:`~link.model.Request`, lets :class:`~mcp_server.auth.CallerAuthenticator`
verify the credentials, and either answers 401/403 (with the OAuth challenge)
or stores the :class:`~mcp_server.gateway.Caller` in the ASGI scope for the
handlers. An anonymous ``tools/call`` of a tool outside the public tenants is
answered 401 here too, so MCP clients learn they need a token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.authentication import AuthCredentials
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from link.model import CredentialKind, Decision, Outcome, Principal, Request
from mcp_server.auth import CallerAuthenticator
from mcp_server.gateway import Caller, ToolGateway
from mcp_server.server import CALLER_SCOPE_KEY, CURRENT_CALLER

__all__ = ["CallerMiddleware", "transport_of"]

REST_PREFIX = "/mcp/v1/tools"


def transport_of(path: str) -> str:
    if path.startswith("/mcp/v1"):
        return "rest"
    if path.startswith(("/mcp/sse", "/mcp/messages")):
        return "sse"
    return "streamable-http"


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope["headers"]:
        name = k.decode("latin-1").lower()
        value = v.decode("latin-1")
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


def _called_tools(message: Any) -> Iterable[str]:
    """Tool names of the ``tools/call`` requests in one JSON-RPC message (or batch)."""
    items = message if isinstance(message, list) else [message]
    for item in items:
        if isinstance(item, dict) and item.get("method") == "tools/call":
            params = item.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            yield name if isinstance(name, str) else ""


def _as_sdk_user(p: Principal) -> AuthenticatedUser:
    """The SDK binds sessions to the credential that opened them; give it the principal's identity."""
    token = AccessToken(
        token="",  # the SDK only compares identities; the token itself stays on the Principal
        client_id=p.consumer or p.subject,
        scopes=sorted(p.scopes),
        subject=p.subject or None,
        claims={"iss": p.issuer} if p.issuer else None,
    )
    return AuthenticatedUser(token)


class CallerMiddleware:
    """ASGI middleware authenticating every request under ``/mcp``."""

    def __init__(
        self, app: ASGIApp, auth: CallerAuthenticator, gateway: ToolGateway, max_body_bytes: int
    ) -> None:
        self.app = app
        self._auth = auth
        self._gateway = gateway
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/mcp" or path.startswith("/mcp/")):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        client = scope.get("client") or ("", 0)
        host = headers.get("host", "")
        scheme = scope.get("scheme", "http")
        base_url = f"{scheme}://{host}{scope.get('root_path', '')}"
        request = Request(
            method=scope["method"], path=path, headers=headers, query=scope.get("query_string", b"").decode(),
            host=host, scheme=scheme, source_address=str(client[0]), source_port=int(client[1] or 0),
            request_id=headers.get("x-request-id", ""), context={"entry": "mcp"},
        )
        result = await self._auth.authenticate(request)
        if result.refusal is not None or result.principal is None:
            refusal = result.refusal or Decision.deny(401, Outcome.UNAUTHENTICATED, "unauthenticated", "")
            await self._auth.refusal_response(refusal, base_url, request.request_id)(scope, receive, send)
            return
        principal = result.principal
        if principal.kind is CredentialKind.ANONYMOUS and scope["method"] == "POST":
            refused, replaying = await self._anonymous_call_check(path, receive)
            if refused is not None:
                challenge = Decision.deny(401, Outcome.UNAUTHENTICATED, "missing_credentials",
                                          f"tool {refused!r} needs a token", {"www-authenticate": "Bearer"})
                await self._auth.refusal_response(challenge, base_url)(scope, receive, send)
                return
            if replaying is None:
                await JSONResponse({"error": "request body too large"}, status_code=413)(scope, _empty, send)
                return
            receive = replaying
        caller = Caller(
            principal=principal, headers=headers, transport=transport_of(path), host=host, scheme=scheme,
            source_address=request.source_address, source_port=request.source_port,
        )
        scope[CALLER_SCOPE_KEY] = caller
        if principal.kind is not CredentialKind.ANONYMOUS:
            scope["user"] = _as_sdk_user(principal)
            scope["auth"] = AuthCredentials(sorted(principal.scopes))
        token = CURRENT_CALLER.set(caller)
        try:
            await self.app(scope, receive, send)
        finally:
            CURRENT_CALLER.reset(token)

    async def _anonymous_call_check(self, path: str, receive: Receive) -> tuple[str | None, Receive | None]:
        """For an anonymous POST: the non-public tool it calls (or None), and a body-replaying receive."""
        if path.startswith(REST_PREFIX + "/"):
            name = path[len(REST_PREFIX) + 1:]
            return (None if self._gateway.public_tool_exists(name) else name), receive
        if path.startswith(REST_PREFIX):
            return None, receive
        body = bytearray()
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if len(body) > self._max_body:
                return None, None
            if not message.get("more_body", False):
                break
        replay: list[Message] = [{"type": "http.request", "body": bytes(body), "more_body": False}]
        replay += [m for m in messages if m["type"] != "http.request"]

        async def replaying() -> Message:
            if replay:
                return replay.pop(0)
            return await receive()

        if b"tools/call" not in body:
            return None, replaying  # nothing is called: no need to parse
        try:
            parsed = json.loads(body)
        except ValueError:
            return None, replaying  # the transport answers the parse error itself
        for name in _called_tools(parsed):
            if not self._gateway.public_tool_exists(name):
                return name, replaying
        return None, replaying


async def _empty() -> Message:
    return {"type": "http.disconnect"}
