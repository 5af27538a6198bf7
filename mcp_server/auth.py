"""Who is calling: the MCP server as an OAuth 2.0 resource server.

Every MCP HTTP request is authenticated once, by Link's own identity phase
(the same object the data plane uses), before the transport sees it. A caller
without credentials is anonymous and may use the public tenants' tools; when
there are none, or the credentials are bad, the answer is 401 with
``WWW-Authenticate: Bearer resource_metadata="…", scope="…"`` so MCP clients
can discover the authorization server (RFC 9728 metadata, served here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from link.model import (
    ANONYMOUS,
    CredentialKind,
    Decision,
    Outcome,
    Principal,
    Request,
    RequestContext,
    RouteMatch,
)

if TYPE_CHECKING:
    from link.app import LinkApp

__all__ = ["AuthResult", "CallerAuthenticator", "metadata_routes"]

METADATA_PATH = "/.well-known/oauth-protected-resource"


@dataclass(slots=True)
class AuthResult:
    principal: Principal | None = None
    refusal: Decision | None = None


def _aud_values(claims: Mapping[str, Any]) -> set[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return {aud}
    if isinstance(aud, list):
        return {a for a in aud if isinstance(a, str)}
    return set()


class CallerAuthenticator:
    """Authenticates MCP HTTP requests with the pipeline's identity phase."""

    def __init__(self, app: LinkApp) -> None:
        s = app.settings
        self._identity = app.pipeline.phase("identity")
        self._mcp = s.mcp
        self._public = bool(s.mcp.public_tenants)
        self._credential_headers = {"authorization", s.identity.api_key_header.lower()}
        if s.identity.mtls_trust_xfcc:
            self._credential_headers.add("x-forwarded-client-cert")
        self._audiences = set(s.identity.audiences)
        if s.mcp.resource_url:
            self._audiences.add(s.mcp.resource_url)
            self._audiences.add(s.mcp.resource_url.rstrip("/"))
        self._scopes = tuple(s.mcp.required_scopes)
        servers = list(s.mcp.authorization_servers)
        if not servers and s.identity.keycloak_url:
            servers = [f"{s.identity.keycloak_url.rstrip('/')}/realms/{s.identity.keycloak_realm}"]
        if not servers:
            servers = [i.issuer for i in s.identity.issuers]
        self.authorization_servers = servers

    def has_credentials(self, headers: Mapping[str, str]) -> bool:
        return any(h in headers for h in self._credential_headers)

    async def authenticate(self, request: Request) -> AuthResult:
        """The caller's principal, or the refusal to answer with."""
        if not self.has_credentials(request.headers):
            if self._public:
                return AuthResult(principal=ANONYMOUS)
            return AuthResult(refusal=Decision.deny(
                401, Outcome.UNAUTHENTICATED, "missing_credentials", "credentials required",
                {"www-authenticate": "Bearer"},
            ))
        if self._identity is None:
            return AuthResult(refusal=Decision.deny(
                503, Outcome.ERROR, "no_identity", "identity is not configured"))
        ctx = RequestContext(
            request=request,
            route=RouteMatch(name="mcp", api="mcp", template="/mcp", required_scopes=self._scopes),
            metadata={"entry": "mcp", "mcp_action": "connect"},
        )
        refusal = await self._identity(ctx)
        if refusal is not None:
            return AuthResult(refusal=refusal)
        principal = ctx.principal
        if (principal.kind is CredentialKind.JWT and self._mcp.resource_url
                and not _aud_values(principal.claims) & self._audiences):
            # MCP authorization: a token must have been issued for this resource (RFC 8707).
            return AuthResult(refusal=Decision.deny(
                401, Outcome.UNAUTHENTICATED, "wrong_audience", "token audience is not this resource",
                {"www-authenticate": 'Bearer error="invalid_token", error_description="wrong audience"'},
            ))
        return AuthResult(principal=principal)

    # -- resource metadata -------------------------------------------------------
    def resource_url(self, base_url: str) -> str:
        return self._mcp.resource_url or base_url.rstrip("/") + "/mcp"

    def metadata_url(self, base_url: str) -> str:
        """RFC 9728 §3.1: the well-known path with the resource's path appended."""
        from urllib.parse import urlsplit

        resource = urlsplit(self.resource_url(base_url))
        path = resource.path if resource.path != "/" else ""
        return f"{resource.scheme}://{resource.netloc}{METADATA_PATH}{path}"

    def metadata(self, base_url: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "resource": self.resource_url(base_url),
            "authorization_servers": self.authorization_servers,
            "bearer_methods_supported": ["header"],
            "resource_name": "STOA Link MCP server",
        }
        if self._scopes:
            doc["scopes_supported"] = list(self._scopes)
        return doc

    def challenge(self, refusal: Decision, base_url: str) -> str:
        """The WWW-Authenticate value for a 401/403: the phase's challenge plus where to get a token."""
        value = (refusal.response_headers.get("www-authenticate") or "Bearer").strip()
        extra: list[str] = []
        if "resource_metadata=" not in value:
            extra.append(f'resource_metadata="{self.metadata_url(base_url)}"')
        if self._scopes and "scope=" not in value:
            extra.append(f'scope="{" ".join(self._scopes)}"')
        if not extra:
            return value
        # "Bearer" alone takes its first parameter after a space; later ones after commas.
        joiner = ", " if " " in value else " "
        return value + joiner + ", ".join(extra)

    def refusal_response(self, refusal: Decision, base_url: str, request_id: str = "") -> Response:
        headers = {k: v for k, v in refusal.response_headers.items() if k.lower() != "www-authenticate"}
        if refusal.http_status in (401, 403):
            headers["www-authenticate"] = self.challenge(refusal, base_url)
        body = {"error": refusal.reason or "unauthorized", "message": refusal.message}
        if request_id:
            body["request_id"] = request_id
        return JSONResponse(body, status_code=refusal.http_status, headers=headers)


def metadata_routes(auth: CallerAuthenticator) -> list[Route]:
    """``/.well-known/oauth-protected-resource`` (and its ``/mcp`` suffixed twin, RFC 9728 §3.1)."""

    async def handler(request: HttpRequest) -> Response:
        return JSONResponse(auth.metadata(str(request.base_url)), headers={"cache-control": "max-age=300"})

    return [
        Route(METADATA_PATH, handler, methods=["GET"]),
        Route(METADATA_PATH + "/mcp", handler, methods=["GET"]),
    ]
