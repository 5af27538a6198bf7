"""Who is calling: the MCP server as an OAuth 2.0 resource server.

Every MCP HTTP request is authenticated once, by Link's own identity phase
(the same object the data plane uses), before the transport sees it. A caller
without credentials is anonymous and may use the public tenants' tools; when
there are none, or the credentials are bad, the answer is 401 with
``WWW-Authenticate: Bearer resource_metadata="…", scope="…"`` so MCP clients
can discover the authorization server (RFC 9728 metadata, served here).

Audience binding (MCP authorization, RFC 8707): a bearer token is accepted
only when its ``aud`` names this MCP server's resource URL. Tokens a trusted
issuer minted for other APIs, or with no audience, are refused 401; the
data plane's ``identity.audiences`` never stand in for the resource. The
resource is ``mcp.resource_url``, or, when that is unset and the Host header
is checked against ``mcp.allowed_hosts`` (loopback by default), the URL the
client used: ``{scheme}://{Host}/mcp``, with the Host's port required to be
the port the server listens on (so a token for another local server is not
replayable here by naming that server's port). When Host is not checked the
Host is the client's to choose, so a derived resource would bind nothing:
the settings refuse to start with OAuth on and no ``mcp.resource_url``.
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
    DecisionRecord,
    Outcome,
    Principal,
    Request,
    RequestContext,
    RouteMatch,
)
from link.settings import host_is_checked

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
        return {_canonical(aud)}
    if isinstance(aud, list):
        return {_canonical(a) for a in aud if isinstance(a, str)}
    return set()


def _canonical(url: str) -> str:
    """Resource URLs compare exactly, but for a trailing slash (``…/mcp`` = ``…/mcp/``)."""
    return url.rstrip("/") if url.count("/") > 2 else url


def _port_of(host: str, scheme: str) -> int | None:
    """The port a Host header names (its scheme's default when none; None when malformed)."""
    if host.startswith("["):  # an IPv6 literal: [::1]:3001
        rest = host[host.find("]") + 1:]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        port = host.rpartition(":")[2] if ":" in host else ""
    if not port:
        return 443 if scheme == "https" else 80
    return int(port) if port.isdigit() else None


def _wrong_audience(description: str) -> Decision:
    return Decision.deny(
        401, Outcome.UNAUTHENTICATED, "wrong_audience", description,
        {"www-authenticate": f'Bearer error="invalid_token", error_description="{description}"'},
    )


class CallerAuthenticator:
    """Authenticates MCP HTTP requests with the pipeline's identity phase."""

    def __init__(self, app: LinkApp) -> None:
        s = app.settings
        self._pipeline = app.pipeline
        self._mcp = s.mcp
        self._public = bool(s.mcp.public_tenants)
        self._credential_headers = {"authorization", s.identity.api_key_header.lower()}
        if s.identity.mtls_trust_xfcc:
            self._credential_headers.add("x-forwarded-client-cert")
        self._resource = _canonical(s.mcp.resource_url) if s.mcp.resource_url else None
        # Deriving the resource from Host is sound only when Host is one of ours (see the module doc).
        self._derive = self._resource is None and host_is_checked(s.mcp)
        self._scopes = tuple(s.mcp.required_scopes)
        # MCP traffic is not routed by settings.routes: the endpoint is its own route (docs/adr/0019).
        self._route = RouteMatch(name="mcp", api="mcp", template="/mcp", required_scopes=self._scopes)
        servers = list(s.mcp.authorization_servers)
        if not servers and s.identity.keycloak_url:
            servers = [f"{s.identity.keycloak_url.rstrip('/')}/realms/{s.identity.keycloak_realm}"]
        if not servers:
            servers = [i.issuer for i in s.identity.issuers]
        self.authorization_servers = servers

    def has_credentials(self, headers: Mapping[str, str]) -> bool:
        return any(h in headers for h in self._credential_headers)

    def resource_for(self, scheme: str, host: str, server_port: int | None) -> str | None:
        """This server's resource URL as seen by one request (None: it cannot be known safely)."""
        if self._resource is not None:
            return self._resource
        if not self._derive or not host:
            return None
        if server_port is not None and _port_of(host, scheme) != server_port:
            return None  # the client names another server's port: nothing here was issued for that
        return f"{scheme}://{host.lower()}/mcp"

    async def authenticate(self, request: Request, resource: str | None = None) -> AuthResult:
        """The caller's principal, or the refusal to answer with; ``resource`` is :meth:`resource_for`'s."""
        if not self.has_credentials(request.headers):
            if self._public:
                return AuthResult(principal=ANONYMOUS)
            return AuthResult(refusal=Decision.deny(
                401, Outcome.UNAUTHENTICATED, "missing_credentials", "credentials required",
                {"www-authenticate": "Bearer"},
            ))
        ctx = RequestContext(request=request, record=DecisionRecord(entry="mcp", mcp_action="connect"))
        identified = await self._pipeline.identify(request, self._route, ctx)
        if identified.principal is None:
            return AuthResult(refusal=identified.refusal)
        principal = identified.principal
        if principal.kind is CredentialKind.JWT:
            # MCP authorization: a token must have been issued for this resource (RFC 8707).
            if resource is None:
                return AuthResult(refusal=_wrong_audience("this server's resource URL is not configured"))
            if _canonical(resource) not in _aud_values(principal.claims):
                return AuthResult(refusal=_wrong_audience("token audience is not this resource"))
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
