"""OIDC providers for tests.

- :class:`Issuer`: keys, discovery and JWKS documents, token minting; no transport.
- :func:`mock_transport`: serves an :class:`Issuer` through ``httpx.MockTransport`` (unit tests).
- :class:`OidcServer`: serves an :class:`Issuer` over real HTTP on a free loopback port,
  laid out like Keycloak (``/realms/{realm}/.well-known/openid-configuration``,
  ``/realms/{realm}/protocol/openid-connect/certs``); counts fetches; can go down and up.
  Its token endpoint (``/realms/{realm}/protocol/openid-connect/token``) implements the
  OAuth 2.0 Token Exchange grant (RFC 8693) for confidential clients, as Keycloak does, and the
  ``client_credentials`` grant for service accounts (claims per client, ``resource`` becomes the
  audience as RFC 8707 asks), optionally with refresh tokens (``refresh_token`` grant, rotated);
  and, for public clients, the authorization code flow with PKCE (S256 required, loopback redirect
  URIs only): its authorization endpoint signs the user in at once (``sign_in_claims``), or
  refuses with ``access_denied`` while ``deny_sign_in`` is set, as a user clicking "no" would.
- :class:`OidcProviderMock`: the PyPI ``oidc-provider-mock`` provider as a real process,
  with :meth:`~OidcProviderMock.id_token` driving its authorization-code flow.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.harness.procs import ManagedProcess, free_port, wait_for_port

_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
CLIENT_CREDENTIALS_GRANT = "client_credentials"
REFRESH_GRANT = "refresh_token"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


@dataclass
class KeyPair:
    """A signing key of the test issuer."""

    kid: str
    alg: str
    private_key: Any

    @classmethod
    def generate(cls, alg: str = "RS256", kid: str | None = None) -> KeyPair:
        if alg.startswith(("RS", "PS")):
            key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg in _CURVES:
            key = ec.generate_private_key(_CURVES[alg]())
        elif alg == "EdDSA":
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(alg)
        return cls(kid=kid or uuid.uuid4().hex[:12], alg=alg, private_key=key)

    def public_jwk(self) -> dict[str, Any]:
        pub = self.private_key.public_key()
        if self.alg.startswith(("RS", "PS")):
            jwk = RSAAlgorithm.to_jwk(pub, as_dict=True)
        elif self.alg in _CURVES:
            jwk = ECAlgorithm.to_jwk(pub, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(pub, as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(
            claims, self.private_key, algorithm=self.alg, headers={"kid": self.kid, **(headers or {})}
        )


@dataclass
class Issuer:
    """A token issuer: its URL, its keys (the last one signs), and the documents it publishes."""

    url: str
    keys: list[KeyPair] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys.append(KeyPair.generate())
        self._lock = threading.Lock()

    @property
    def active(self) -> KeyPair:
        return self.keys[-1]

    def rotate(self, alg: str = "RS256", keep_old: bool = True) -> KeyPair:
        """Publish a new signing key; the old ones stay published unless ``keep_old`` is False."""
        new = KeyPair.generate(alg)
        with self._lock:
            self.keys = [*self.keys, new] if keep_old else [new]
        return new

    def discovery(self, base: str | None = None) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": f"{base or self.url}/protocol/openid-connect/certs",
            "token_endpoint": f"{base or self.url}/protocol/openid-connect/token",
            "authorization_endpoint": f"{base or self.url}/protocol/openid-connect/auth",
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": [TOKEN_EXCHANGE_GRANT, CLIENT_CREDENTIALS_GRANT, REFRESH_GRANT, "authorization_code"],
            "id_token_signing_alg_values_supported": sorted({k.alg for k in self.keys}),
        }

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [k.public_jwk() for k in self.keys]}

    def claims(
        self, *, sub: str = "user-1", azp: str = "billing-app", lifetime: float = 300, **extra: Any
    ) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.url,
            "sub": sub,
            "azp": azp,
            "aud": "account",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "typ": "Bearer",
            "jti": uuid.uuid4().hex,
        }
        base.update(extra)
        return {k: v for k, v in base.items() if v is not None}

    def token(
        self, *, key: KeyPair | None = None, headers: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        """A signed access token; ``claims`` override the defaults (``None`` removes one)."""
        return (key or self.active).sign(self.claims(**claims), headers)


def mock_transport(
    issuer: Issuer, counts: Counter[str] | None = None, fail: threading.Event | None = None
) -> httpx.MockTransport:
    """Serve discovery (``{issuer}/.well-known/openid-configuration``) and JWKS without a network."""
    counts = counts if counts is not None else Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        counts[request.url.path] += 1
        if fail is not None and fail.is_set():
            return httpx.Response(503)
        if url == f"{issuer.url}/.well-known/openid-configuration":
            return httpx.Response(200, json=issuer.discovery())
        if url == f"{issuer.url}/protocol/openid-connect/certs":
            return httpx.Response(200, json=issuer.jwks())
        return httpx.Response(404)

    return httpx.MockTransport(handler)


@dataclass
class Exchange:
    """One token exchange the provider answered (what a test may check; no secrets)."""

    client_id: str
    subject: str
    audience: str
    resource: str | None
    scope: str | None
    status: int


@dataclass
class Grant:
    """One token request the provider answered (grant type, client, HTTP status; no secrets)."""

    grant_type: str
    client_id: str
    status: int
    resource: str | None = None


def _oauth_error(status: int, error: str, description: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": error, "error_description": description}


def _basic_client(header: str | None) -> tuple[str, str] | None:
    import base64

    if not header or not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    client, sep, secret = raw.partition(":")
    return (client, secret) if sep else None


class _Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # headers and body are two writes: no wait for a delayed ACK between
    server: _Server

    def do_POST(self) -> None:
        srv = self.server
        path = urlparse(self.path).path
        srv.owner.counts[path] += 1
        if path != f"/realms/{srv.owner.realm}/protocol/openid-connect/token":
            self.send_error(404)
            return
        length = int(self.headers.get("content-length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode("utf-8", "replace")).items()}
        status, body = srv.owner.token_endpoint(form, self.headers.get("authorization"))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        srv = self.server
        path = urlparse(self.path).path
        srv.owner.counts[path] += 1
        # A hanging provider: the connection is accepted, the answer waits (bounded) for release.
        srv.owner.released.wait(_HANG_BOUND_S)
        prefix = f"/realms/{srv.owner.realm}"
        if path == f"{prefix}/protocol/openid-connect/auth":
            query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            status, answer = srv.owner.authorize(query)
            self.send_response(status)
            for name, value in answer.items():
                if name == "location":
                    self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        if path == f"{prefix}/.well-known/openid-configuration":
            body = srv.owner.issuer.discovery(base=f"{srv.owner.url}{prefix}")
        elif path == f"{prefix}/protocol/openid-connect/certs":
            body = srv.owner.issuer.jwks()
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


_HANG_BOUND_S = 30.0


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    owner: OidcServer


class OidcServer:
    """A Keycloak-shaped issuer over real HTTP: ``with OidcServer() as idp: idp.keycloak_url``.

    ``public_url`` lets the tokens name another issuer than the URL Link reaches
    (Keycloak behind an internal address).
    """

    def __init__(self, realm: str = "stoa", public_url: str | None = None,
                 clients: dict[str, str] | None = None, exchange_lifetime_s: int = 300,
                 service_accounts: dict[str, dict[str, Any]] | None = None, client_token_lifetime_s: int = 300,
                 refresh_tokens: bool = False, public_clients: set[str] | None = None,
                 sign_in_claims: dict[str, Any] | None = None) -> None:
        self.realm = realm
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.issuer = Issuer(public_url or f"{self.url}/realms/{realm}")
        self.counts: Counter[str] = Counter()
        # Confidential clients allowed to exchange tokens: client_id -> secret.
        self.clients = dict(clients if clients is not None else {"stoa-link": "link-secret"})
        self.exchange_lifetime_s = exchange_lifetime_s
        self.exchanges: list[Exchange] = []
        # client_credentials: the claims each client's service-account token carries (tenant, scope…).
        self.service_accounts = dict(service_accounts or {})
        self.client_token_lifetime_s = client_token_lifetime_s
        self.refresh_tokens = refresh_tokens
        # live refresh token -> (client, resource, subject, claims)
        self._refresh: dict[str, tuple[str, str | None, str, dict[str, Any]]] = {}
        self.grants: list[Grant] = []
        self.public_clients = set(public_clients or ())
        self.sign_in_claims = dict(sign_in_claims or {})
        self.deny_sign_in = False
        self._codes: dict[str, dict[str, str]] = {}  # one-time authorization codes
        self.released = threading.Event()  # cleared while the provider hangs
        self.released.set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def keycloak_url(self) -> str:
        return self.url

    @property
    def jwks_fetches(self) -> int:
        return self.counts[f"/realms/{self.realm}/protocol/openid-connect/certs"]

    @property
    def token_url(self) -> str:
        return f"{self.url}/realms/{self.realm}/protocol/openid-connect/token"

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this issuer signed (signature and expiry checked; audience not)."""
        kid = jwt.get_unverified_header(token).get("kid")
        key = next((k for k in self.issuer.keys if k.kid == kid), None)
        if key is None:
            raise jwt.InvalidTokenError("unknown kid")
        return dict(jwt.decode(token, key.public_pem(), algorithms=[key.alg], issuer=self.issuer.url,
                               options={"verify_aud": False, "require": ["exp", "sub"]}))

    def token_endpoint(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """RFC 8693 token exchange for a confidential client (client_secret_basic or _post)."""
        if authorization is None and form.get("client_id") in self.public_clients:
            status, body = self._public_client_token(form)
            self.grants.append(Grant(form.get("grant_type", ""), form["client_id"], status, form.get("resource")))
            return status, body
        creds = _basic_client(authorization) or (
            (form["client_id"], form.get("client_secret", "")) if "client_id" in form else None)
        if creds is None or self.clients.get(creds[0]) != creds[1]:
            return _oauth_error(401, "invalid_client", "client authentication failed")
        client_id = creds[0]
        if form.get("grant_type") in (CLIENT_CREDENTIALS_GRANT, REFRESH_GRANT):
            status, body = self._service_account_token(client_id, form)
            self.grants.append(Grant(str(form["grant_type"]), client_id, status, form.get("resource")))
            return status, body
        if form.get("grant_type") != TOKEN_EXCHANGE_GRANT:
            return _oauth_error(400, "unsupported_grant_type", "only token exchange is served here")
        if form.get("subject_token_type") != ACCESS_TOKEN_TYPE or not form.get("subject_token"):
            return _oauth_error(400, "invalid_request", "an access token subject_token is required")
        audience = form.get("audience")
        if not audience:
            return _oauth_error(400, "invalid_request", "audience is required")
        try:
            subject = self.verify(form["subject_token"])
        except jwt.PyJWTError:
            self.exchanges.append(Exchange(client_id, "", audience, form.get("resource"), form.get("scope"), 400))
            return _oauth_error(400, "invalid_grant", "the subject token is not valid")
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer.url, "sub": subject["sub"], "aud": audience, "azp": client_id,
            "act": {"sub": client_id}, "iat": now, "nbf": now, "exp": now + self.exchange_lifetime_s,
            "typ": "Bearer", "jti": uuid.uuid4().hex,
            "scope": form.get("scope") or subject.get("scope", ""),
        }
        if form.get("resource"):
            claims["aud"] = [audience, form["resource"]]
        if "tenant" in subject:
            claims["tenant"] = subject["tenant"]
        self.exchanges.append(Exchange(client_id, subject["sub"], audience, form.get("resource"), form.get("scope"),
                                       200))
        return 200, {"access_token": self.issuer.active.sign(claims), "issued_token_type": ACCESS_TOKEN_TYPE,
                     "token_type": "Bearer", "expires_in": self.exchange_lifetime_s}

    def _service_account_token(self, client_id: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """client_credentials (and its refresh) for a client with a service account."""
        if client_id not in self.service_accounts:
            return _oauth_error(400, "unauthorized_client", "the client has no service account")
        resource = form.get("resource")
        if form["grant_type"] == REFRESH_GRANT:
            return self._refreshed(client_id, form)
        extra = self.service_accounts[client_id]
        if form.get("scope"):
            granted = set(str(extra.get("scope", "")).split())
            extra = {**extra, "scope": " ".join(s for s in form["scope"].split() if s in granted)}
        return self._issue(client_id, f"service-account-{client_id}", resource, extra, self.refresh_tokens)

    def _refreshed(self, client_id: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        held = self._refresh.pop(form.get("refresh_token", ""), None)
        if held is None or held[0] != client_id:
            return _oauth_error(400, "invalid_grant", "the refresh token is not valid")
        _, resource, subject, extra = held
        return self._issue(client_id, subject, form.get("resource") or resource, extra, True)

    def _issue(self, client_id: str, subject: str, resource: str | None, extra: dict[str, Any],
               with_refresh: bool) -> tuple[int, dict[str, Any]]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer.url, "sub": subject, "azp": client_id,
            "aud": resource or "account", "iat": now, "nbf": now, "exp": now + self.client_token_lifetime_s,
            "typ": "Bearer", "jti": uuid.uuid4().hex, **extra,
        }
        body: dict[str, Any] = {"access_token": self.issuer.active.sign(claims), "token_type": "Bearer",
                                "expires_in": self.client_token_lifetime_s, "scope": claims.get("scope", "")}
        if with_refresh:
            refresh = uuid.uuid4().hex
            self._refresh[refresh] = (client_id, resource, subject, extra)
            body["refresh_token"] = refresh
        return 200, body

    def _public_client_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The authorization code grant with PKCE, and refreshes, for a public client (no secret)."""
        client_id = form["client_id"]
        if form.get("grant_type") == REFRESH_GRANT:
            return self._refreshed(client_id, form)
        if form.get("grant_type") != "authorization_code":
            return _oauth_error(400, "unauthorized_client", "a public client signs in with a code")
        held = self._codes.pop(form.get("code", ""), None)
        if held is None or held["client_id"] != client_id or held["redirect_uri"] != form.get("redirect_uri"):
            return _oauth_error(400, "invalid_grant", "the code is not valid for this client and redirect")
        import base64
        import hashlib

        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).decode().rstrip("=") != held["challenge"]:
            return _oauth_error(400, "invalid_grant", "PKCE verification failed")
        return self._issue(client_id, "user-1", held.get("resource") or None, self.sign_in_claims, True)

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str]]:
        """The authorization endpoint: (302, Location) to the client's redirect, or (400, an error page)."""
        from urllib.parse import urlencode

        client_id, redirect = query.get("client_id", ""), query.get("redirect_uri", "")
        target = urlparse(redirect)
        if client_id not in self.public_clients or target.scheme != "http" or target.hostname != "127.0.0.1":
            return 400, {"error": "invalid_request", "error_description": "unknown client or redirect"}
        state = {"state": query["state"]} if "state" in query else {}
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256" \
                or not query.get("code_challenge"):
            answer = {"error": "invalid_request", "error_description": "PKCE S256 is required", **state}
        elif self.deny_sign_in:
            answer = {"error": "access_denied", "error_description": "the user said no", **state}
        else:
            code = uuid.uuid4().hex
            self._codes[code] = {"client_id": client_id, "redirect_uri": redirect, "resource": query.get("resource", ""),
                                 "challenge": query["code_challenge"]}
            answer = {"code": code, **state}
        return 302, {"location": f"{redirect}?{urlencode(answer)}"}

    def start(self) -> OidcServer:
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="oidc"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until :meth:`start` again (same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    @contextmanager
    def down(self) -> Iterator[None]:
        """The provider is unreachable inside the block."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    @contextmanager
    def hanging(self) -> Iterator[None]:
        """Inside the block the provider accepts connections but answers nothing; answers follow at exit."""
        self.released.clear()
        try:
            yield
        finally:
            self.released.set()

    def __enter__(self) -> OidcServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class OidcProviderMock:
    """PyPI ``oidc-provider-mock`` as a real process on a free port."""

    def __init__(self, token_max_age_s: int = 300) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._argv = [
            sys.executable,
            "-m",
            "oidc_provider_mock",
            "--port",
            str(self.port),
            "--token-max-age",
            str(token_max_age_s),
        ]
        self.proc: ManagedProcess | None = None

    def start(self) -> OidcProviderMock:
        self.proc = ManagedProcess(self._argv, env={"NO_COLOR": "1"})
        wait_for_port(self.port, timeout=20, proc=self.proc.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def id_token(self, sub: str, client_id: str, claims: dict[str, Any] | None = None) -> str:
        """Run the authorization-code flow as ``sub`` and return the ID token (a JWT) it issues."""
        redirect_uri = "http://127.0.0.1/callback"
        with httpx.Client(base_url=self.url, timeout=10.0) as http:
            http.put(f"/users/{sub}", json=claims or {}).raise_for_status()
            params = {
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": "openid",
                "state": "s",
            }
            resp = http.post("/oauth2/authorize", params=params, data={"sub": sub, "action": "allow"})
            assert resp.status_code in (302, 303), resp.text[:200]
            code = parse_qs(urlparse(resp.headers["location"]).query)["code"][0]
            token = http.post(
                "/oauth2/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "client_id": client_id,
                    "client_secret": "anything",
                },
            )
            token.raise_for_status()
            return str(token.json()["id_token"])

    def __enter__(self) -> OidcProviderMock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
