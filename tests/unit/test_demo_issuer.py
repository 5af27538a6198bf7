"""The demo's Keycloak-shaped token issuer over real loopback HTTP: discovery, JWKS, client_credentials,
and every way a client can fail to authenticate or ask wrongly (an OAuth error, never a 500)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from link.demo.issuer import DEMO_AUDIENCE, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DemoIssuer


@pytest.fixture(scope="module")  # stateless between requests; one RSA key per module keeps this fast
def issuer() -> Iterator[DemoIssuer]:
    idp = DemoIssuer().start()
    try:
        yield idp
    finally:
        idp.stop()


def _verify(idp: DemoIssuer, token: str) -> dict[str, Any]:
    """Verify a token the way a relying party does: discovery, then the JWKS it names."""
    disc = httpx.get(f"{idp.issuer}/.well-known/openid-configuration", timeout=5).json()
    jwks = httpx.get(disc["jwks_uri"], timeout=5).json()
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    key = jwt.PyJWK(jwk).key
    return dict(jwt.decode(token, key, algorithms=["RS256"], issuer=disc["issuer"], audience=DEMO_AUDIENCE))


def test_discovery_is_keycloak_shaped(issuer: DemoIssuer) -> None:
    assert issuer.keycloak_url.startswith("http://127.0.0.1:")
    disc = httpx.get(f"{issuer.keycloak_url}/realms/stoa/.well-known/openid-configuration", timeout=5).json()
    assert disc["issuer"] == f"{issuer.keycloak_url}/realms/stoa"
    assert disc["jwks_uri"] == f"{issuer.keycloak_url}/realms/stoa/protocol/openid-connect/certs"
    assert disc["token_endpoint"] == issuer.token_url
    assert "client_credentials" in disc["grant_types_supported"]


@pytest.mark.parametrize("how", ["basic", "form"])
def test_client_credentials_issue_a_verifiable_short_token(issuer: DemoIssuer, how: str) -> None:
    form = {"grant_type": "client_credentials"}
    auth: tuple[str, str] | None = (DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    if how == "form":
        form |= {"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET}
        auth = None
    r = httpx.post(issuer.token_url, data=form, auth=auth, timeout=5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    claims = _verify(issuer, body["access_token"])
    assert claims["iss"] == issuer.issuer
    assert claims["sub"] == "service-account-demo-client"
    assert claims["azp"] == DEMO_CLIENT_ID
    assert claims["aud"] == DEMO_AUDIENCE
    assert claims["tenant"] == "tenant-acme"
    assert claims["exp"] - claims["iat"] == 900
    assert set(claims["scope"].split()) == {"invoices:read", "invoices:write"}


def test_a_narrower_scope_is_granted_as_asked(issuer: DemoIssuer) -> None:
    r = httpx.post(issuer.token_url, data={"grant_type": "client_credentials", "scope": "invoices:read"},
                   auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET), timeout=5)
    assert r.status_code == 200, r.text
    assert _verify(issuer, r.json()["access_token"])["scope"] == "invoices:read"


def test_the_tenant_claim_follows_links_setting() -> None:
    idp = DemoIssuer(tenant_claim="org.tenant").start()
    try:
        r = httpx.post(idp.token_url, data={"grant_type": "client_credentials"},
                       auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET), timeout=5)
        assert _verify(idp, r.json()["access_token"])["org"] == {"tenant": "tenant-acme"}
    finally:
        idp.stop()


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


_CC = "grant_type=client_credentials"
# (what is wrong, form body, authorization header, status, OAuth error)
_REFUSALS: list[tuple[str, str, str | None, int, str]] = [
    ("wrong secret (basic)", _CC, _basic(b"demo-client:wrong"), 401, "invalid_client"),
    ("wrong secret (form)", f"{_CC}&client_id=demo-client&client_secret=wrong", None, 401, "invalid_client"),
    ("no secret (form)", f"{_CC}&client_id=demo-client", None, 401, "invalid_client"),
    ("empty secret (basic)", _CC, _basic(b"demo-client:"), 401, "invalid_client"),
    ("unknown client", _CC, _basic(b"someone:demo-secret"), 401, "invalid_client"),
    ("no client at all", _CC, None, 401, "invalid_client"),
    ("basic without a colon", _CC, _basic(b"demo-client"), 401, "invalid_client"),
    ("basic not base64", _CC, "Basic !!!not-base64", 401, "invalid_client"),
    ("basic not utf-8", _CC, _basic(b"\xff\xfe:\xff"), 401, "invalid_client"),
    ("bearer instead of basic", _CC, "Bearer abc", 401, "invalid_client"),
    ("no grant type", "", _basic(b"demo-client:demo-secret"), 400, "unsupported_grant_type"),
    ("password grant", "grant_type=password&username=a&password=b", _basic(b"demo-client:demo-secret"), 400,
     "unsupported_grant_type"),
    ("a scope not granted", f"{_CC}&scope=admin", _basic(b"demo-client:demo-secret"), 400, "invalid_scope"),
    ("one good scope, one not", f"{_CC}&scope=invoices:read+admin", _basic(b"demo-client:demo-secret"), 400,
     "invalid_scope"),
    ("oversized form", _CC + "&pad=" + "x" * 9000, _basic(b"demo-client:demo-secret"), 400, "invalid_request"),
]


@pytest.mark.parametrize(("why", "form", "authorization", "status", "error"), _REFUSALS,
                         ids=[r[0] for r in _REFUSALS])
def test_bad_clients_and_requests_get_an_oauth_error(issuer: DemoIssuer, why: str, form: str,
                                                     authorization: str | None, status: int, error: str) -> None:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if authorization is not None:
        headers["authorization"] = authorization
    r = httpx.post(issuer.token_url, content=form.encode(), headers=headers, timeout=5)
    assert r.status_code == status, (why, r.text)
    assert r.json()["error"] == error
    assert "access_token" not in r.json()
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/realms/other/.well-known/openid-configuration"),
    ("GET", "/realms/stoa/protocol/openid-connect/token"),
    ("POST", "/realms/stoa/protocol/openid-connect/certs"),
    ("GET", "/"),
])
def test_other_paths_are_not_found(issuer: DemoIssuer, method: str, path: str) -> None:
    r = httpx.request(method, issuer.keycloak_url + path, timeout=5)
    assert r.status_code == 404


def test_keys_are_made_per_start() -> None:
    a, b = DemoIssuer().start(), DemoIssuer().start()
    try:
        ka = httpx.get(f"{a.issuer}/protocol/openid-connect/certs", timeout=5).json()["keys"][0]
        kb = httpx.get(f"{b.issuer}/protocol/openid-connect/certs", timeout=5).json()["keys"][0]
        assert ka["n"] != kb["n"] and ka["kid"] != kb["kid"]
    finally:
        a.stop()
        b.stop()
