"""A small Keycloak-shaped OIDC token issuer for the demo (loopback only, keys in memory).

It serves what Link's identity settings reach with ``identity.keycloak_url`` and realm ``stoa``:
discovery, the JWKS, and a token endpoint answering the OAuth 2.0 ``client_credentials`` grant
for one confidential demo client (client_secret_basic or client_secret_post). Tokens are RS256,
short-lived, and carry the tenant claim Link reads, so the demo's contract-governed routes
(``required_policies: [auth-jwt]``) can be called the way a platform team would with Keycloak.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

__all__ = ["DEMO_AUDIENCE", "DEMO_CLIENT_ID", "DEMO_CLIENT_SECRET", "DemoClient", "DemoIssuer"]

DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"
DEMO_AUDIENCE = "stoa-link"
_MAX_FORM_BYTES = 8_192
_CLIENT_CREDENTIALS = "client_credentials"


@dataclass(frozen=True)
class DemoClient:
    """A confidential client and what its tokens say about it."""

    client_id: str
    secret: str
    tenant: str
    scopes: tuple[str, ...]
    audience: str = DEMO_AUDIENCE


_DEFAULT_CLIENTS = (DemoClient(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, "tenant-acme",
                               ("invoices:read", "invoices:write")),)


@dataclass
class _Realm:
    """The signing key, the clients, and the token rules of one realm."""

    issuer: str
    clients: dict[str, DemoClient]
    tenant_claim: str
    lifetime_s: int
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/protocol/openid-connect/certs",
            "token_endpoint": f"{self.issuer}/protocol/openid-connect/token",
            "grant_types_supported": [_CLIENT_CREDENTIALS],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """The token endpoint's answer (status, JSON body), as RFC 6749 section 4.4 and 5.2 say."""
        creds = _basic_client(authorization)
        if creds is None and "client_id" in form:
            creds = (form["client_id"], form.get("client_secret", ""))
        client = self.clients.get(creds[0]) if creds else None
        if creds is None or client is None or client.secret != creds[1]:
            return 401, {"error": "invalid_client", "error_description": "client authentication failed"}
        if form.get("grant_type") != _CLIENT_CREDENTIALS:
            return 400, {"error": "unsupported_grant_type",
                         "error_description": "only grant_type=client_credentials is served here"}
        asked = form.get("scope", "").split()
        unknown = [s for s in asked if s not in client.scopes]
        if unknown:
            return 400, {"error": "invalid_scope", "error_description": f"not granted to this client: {unknown[0]}"}
        scope = " ".join(asked or client.scopes)
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": f"service-account-{client.client_id}", "azp": client.client_id,
            "aud": client.audience, "iat": now, "nbf": now, "exp": now + self.lifetime_s,
            "typ": "Bearer", "jti": uuid.uuid4().hex, "scope": scope,
        }
        _set_claim(claims, self.tenant_claim, client.tenant)
        access = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        return 200, {"access_token": access, "token_type": "Bearer", "expires_in": self.lifetime_s,
                     "scope": scope}


def _set_claim(claims: dict[str, Any], dotted: str, value: str) -> None:
    """Put ``value`` at a dotted claim path (Link reads ``identity.tenant_claim`` the same way)."""
    *parents, leaf = dotted.split(".")
    node = claims
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _basic_client(header: str | None) -> tuple[str, str] | None:
    """``(client_id, secret)`` from ``Authorization: Basic``; None when absent or unreadable."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    client, sep, secret = raw.partition(":")
    return (client, secret) if sep else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "demo-issuer"

    def log_message(self, *args: Any) -> None:
        return

    def _reply(self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("cache-control", "no-store")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        realm, path = self.server.realm, urlparse(self.path).path
        prefix = self.server.prefix
        if path == f"{prefix}/.well-known/openid-configuration":
            self._reply(200, realm.discovery())
        elif path == f"{prefix}/protocol/openid-connect/certs":
            self._reply(200, realm.jwks())
        else:
            self._reply(404, {"error": "not_found"})

    def do_POST(self) -> None:
        if urlparse(self.path).path != f"{self.server.prefix}/protocol/openid-connect/token":
            self.close_connection = True
            self._reply(404, {"error": "not_found"})
            return
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_FORM_BYTES:
            self.close_connection = True
            self._reply(400, {"error": "invalid_request", "error_description": "a form body of at most 8 KiB"})
            return
        raw = self.rfile.read(length).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(raw).items()}
        status, body = self.server.realm.token(form, self.headers.get("authorization"))
        # RFC 6749 5.2: a client that tried Basic authentication gets the challenge back.
        challenge = {"www-authenticate": 'Basic realm="stoa"'} if status == 401 else None
        self._reply(status, body, challenge)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    realm: _Realm
    prefix: str


class DemoIssuer:
    """Runs in a thread on loopback; ``keycloak_url`` and ``token_url`` once started."""

    def __init__(self, *, realm: str = "stoa", tenant_claim: str = "tenant", lifetime_s: int = 900,
                 clients: tuple[DemoClient, ...] = _DEFAULT_CLIENTS, port: int = 0) -> None:
        self._server = _Server(("127.0.0.1", port), _Handler)
        self.realm_name = realm
        self._server.prefix = f"/realms/{realm}"
        self._server.realm = _Realm(issuer=f"{self.keycloak_url}/realms/{realm}",
                                    clients={c.client_id: c for c in clients},
                                    tenant_claim=tenant_claim, lifetime_s=lifetime_s)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="demo-issuer")

    @property
    def keycloak_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def issuer(self) -> str:
        return self._server.realm.issuer

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    def start(self) -> DemoIssuer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
