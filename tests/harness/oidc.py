"""OIDC providers for tests.

- :class:`Issuer`: keys, discovery and JWKS documents, token minting; no transport.
- :func:`mock_transport`: serves an :class:`Issuer` through ``httpx.MockTransport`` (unit tests).
- :class:`OidcServer`: serves an :class:`Issuer` over real HTTP on a free loopback port,
  laid out like Keycloak (``/realms/{realm}/.well-known/openid-configuration``,
  ``/realms/{realm}/protocol/openid-connect/certs``); counts fetches; can go down and up.
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


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        srv = self.server
        path = urlparse(self.path).path
        srv.owner.counts[path] += 1
        prefix = f"/realms/{srv.owner.realm}"
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


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    owner: OidcServer


class OidcServer:
    """A Keycloak-shaped issuer over real HTTP: ``with OidcServer() as idp: idp.keycloak_url``.

    ``public_url`` lets the tokens name another issuer than the URL Link reaches
    (Keycloak behind an internal address).
    """

    def __init__(self, realm: str = "stoa", public_url: str | None = None) -> None:
        self.realm = realm
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.issuer = Issuer(public_url or f"{self.url}/realms/{realm}")
        self.counts: Counter[str] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def keycloak_url(self) -> str:
        return self.url

    @property
    def jwks_fetches(self) -> int:
        return self.counts[f"/realms/{self.realm}/protocol/openid-connect/certs"]

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
