"""The HTTP layer in front of every MCP transport: authenticate the caller once per request.

For paths under ``/mcp`` the middleware turns the HTTP request into Link's
own :class:`~link.model.Request`, lets :class:`~mcp_server.auth.CallerAuthenticator`
verify the credentials, and either answers 401/403 (with the OAuth challenge)
or stores the :class:`~mcp_server.gateway.Caller` in the ASGI scope for the
handlers. An anonymous ``tools/call`` of a tool outside the public tenants is
answered 401 here too, so MCP clients learn they need a token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Receive, Scope, Send

from link.headers import fold_headers
from link.model import CredentialKind, Decision, Outcome, Principal, Request
from mcp_server.auth import CallerAuthenticator
from mcp_server.bodies import parsed_body
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
    return fold_headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])


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

    def __init__(self, app: ASGIApp, auth: CallerAuthenticator, gateway: ToolGateway) -> None:
        self.app = app
        self._auth = auth
        self._gateway = gateway

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
        server = scope.get("server")
        resource = self._auth.resource_for(scheme, host, int(server[1]) if server and server[1] else None)
        result = await self._auth.authenticate(request, resource)
        if result.refusal is not None or result.principal is None:
            refusal = result.refusal or Decision.deny(401, Outcome.UNAUTHENTICATED, "unauthenticated", "")
            await self._auth.refusal_response(refusal, base_url, request.request_id)(scope, receive, send)
            return
        principal = result.principal
        if principal.kind is CredentialKind.ANONYMOUS and scope["method"] == "POST":
            refused = self._anonymous_call_check(path, scope)
            if refused is not None:
                challenge = Decision.deny(401, Outcome.UNAUTHENTICATED, "missing_credentials",
                                          f"tool {refused!r} needs a token", {"www-authenticate": "Bearer"})
                await self._auth.refusal_response(challenge, base_url)(scope, receive, send)
                return
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

    def _anonymous_call_check(self, path: str, scope: Scope) -> str | None:
        """For an anonymous POST: the non-public tool it calls, if any.

        The body was read and parsed by :class:`~mcp_server.bodies.BoundedBody` (bounded, duplicate
        keys refused), so the tool name seen here is the one the SDK will dispatch.
        """
        if path.startswith(REST_PREFIX + "/"):
            name = path[len(REST_PREFIX) + 1:]
            return None if self._gateway.public_tool_exists(name) else name
        if path.startswith(REST_PREFIX):
            return None
        for name in _called_tools(parsed_body(scope)):
            if not self._gateway.public_tool_exists(name):
                return name
        return None


