"""Identity end to end through real Envoy: tokens, principal headers, spoofing, API key rotation."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from link.identity.apikeys import hash_api_key
from tests.harness.oidc import KeyPair, OidcServer
from tests.harness.procs import wait_until
from tests.harness.sidecar import Sidecar

pytestmark = pytest.mark.integration

ROUTES = [
    {"name": "health", "prefix": "/health", "anonymous": True},
    {"name": "invoices", "prefix": "/invoices", "required_scopes": ["invoices:read"]},
    {"name": "api", "prefix": "/"},
]
KEY_OLD, KEY_NEW = "sk-live-old-0123456789abcdef", "sk-live-new-fedcba9876543210"


def write_keys(path: Path, keys: dict[str, dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump({hash_api_key(k): v for k, v in keys.items()}))
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcServer]:
    with OidcServer() as server:
        yield server


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory, transport: str) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "api-keys.yaml"
    write_keys(path, {KEY_OLD: {"consumer": "partner-app", "tenant": "globex", "scopes": ["invoices:read"]}})
    return path


@pytest.fixture(scope="module")
def sidecar(idp: OidcServer, keys_file: Path, transport: str) -> Iterator[Sidecar]:
    overrides = {
        "identity.keycloak_url": idp.keycloak_url,
        "identity.api_keys_file": str(keys_file),
        "identity.api_keys_reload_s": 0.05,
    }
    with Sidecar(overrides, routes=ROUTES, transport=transport) as sc:
        yield sc


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", **headers}


def test_envoy_valid_token_reaches_upstream_with_principal_headers(idp: OidcServer, sidecar: Sidecar) -> None:
    token = idp.issuer.token(sub="alice", azp="billing-app", tenant="acme", scope="invoices:read")
    r = sidecar.get("/invoices/42", headers=bearer(token))
    assert r.status_code == 200
    seen = sidecar.upstream.requests[-1]
    assert seen.path == "/invoices/42"
    assert (
        seen.headers["x-stoa-tenant"],
        seen.headers["x-stoa-consumer"],
        seen.headers["x-stoa-subject"],
    ) == (
        "acme",
        "billing-app",
        "alice",
    )
    assert seen.headers["authorization"] == f"Bearer {token}"  # the gateway behind may need it too


def test_envoy_spoofed_stoa_headers_are_stripped(idp: OidcServer, sidecar: Sidecar) -> None:
    token = idp.issuer.token(sub="mallory", azp="crm", tenant="acme")
    r = sidecar.get("/orders", headers=bearer(token, **{"x-stoa-tenant": "globex", "x-stoa-role": "admin"}))
    assert r.status_code == 200
    seen = sidecar.upstream.requests[-1]
    assert seen.headers["x-stoa-tenant"] == "acme"
    assert "x-stoa-role" not in seen.headers


def test_envoy_refusals_follow_rfc6750(idp: OidcServer, sidecar: Sidecar) -> None:
    before = len(sidecar.upstream.requests)
    missing = sidecar.get("/orders", headers={"x-stoa-tenant": "acme"})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == (
        'Bearer realm="stoa", error="invalid_request", error_description="missing credentials"'
    )
    assert missing.json()["error"] == "unauthorized"

    forged = KeyPair.generate().sign(idp.issuer.claims())
    bad = sidecar.get("/orders", headers=bearer(forged))
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]
    assert forged[:16] not in bad.text

    no_scope = sidecar.get("/invoices/1", headers=bearer(idp.issuer.token(scope="openid")))
    assert no_scope.status_code == 403
    assert 'error="insufficient_scope"' in no_scope.headers["www-authenticate"]
    assert 'scope="invoices:read"' in no_scope.headers["www-authenticate"]
    assert len(sidecar.upstream.requests) == before

    assert sidecar.get("/health").status_code == 200  # the one route declared anonymous

    metrics = httpx.get(f"{sidecar.link.admin_url}/metrics", timeout=5).text
    for reason in ("missing_credentials", "unknown_key", "insufficient_scope"):
        assert f'stoa_link_identity_refusals_total{{reason="{reason}"}}' in metrics


def test_envoy_api_key_works_and_a_revoked_one_is_refused_after_rotation(
    sidecar: Sidecar, keys_file: Path
) -> None:
    r = sidecar.get("/invoices/7", headers={"x-api-key": KEY_OLD})
    assert r.status_code == 200
    seen = sidecar.upstream.requests[-1]
    assert (seen.headers["x-stoa-tenant"], seen.headers["x-stoa-consumer"]) == ("globex", "partner-app")

    write_keys(
        keys_file, {KEY_NEW: {"consumer": "partner-app", "tenant": "globex", "scopes": ["invoices:read"]}}
    )
    assert wait_until(
        lambda: sidecar.get("/invoices/7", headers={"x-api-key": KEY_OLD}).status_code == 401, timeout=10
    )
    refused = sidecar.get("/invoices/7", headers={"x-api-key": KEY_OLD})
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert sidecar.get("/invoices/7", headers={"x-api-key": KEY_NEW}).status_code == 200


def test_envoy_unknown_kid_while_the_provider_hangs_is_401_not_503() -> None:
    # Envoy gives Link authz_timeout_ms (200 ms by default, 2 s in the harness) and answers 503 itself past it. A token signed
    # with a key Link has not seen starts a JWKS fetch; the provider hangs (accepts, never answers)
    # so the fetch runs far past Envoy's budget. Link must answer 401 before that, and find the
    # key once the fetch lands.
    with OidcServer() as idp, Sidecar(
        {"identity.keycloak_url": idp.keycloak_url, "identity.jwks_min_refresh_interval_s": 0,
         "identity.jwks_fetch_timeout_s": 20},
        routes=ROUTES,
    ) as sc:
        assert sc.get("/orders", headers=bearer(idp.issuer.token(sub="before"))).status_code == 200
        fetches_at_start = idp.jwks_fetches
        new_key = idp.issuer.rotate("ES256")
        token = idp.issuer.token(key=new_key, sub="rotated")
        before = len(sc.upstream.requests)
        with idp.hanging():
            answers = [sc.get("/orders", headers=bearer(token)) for _ in range(4)]
            assert [r.status_code for r in answers] == [401] * 4
            for r in answers:
                assert r.headers["www-authenticate"].startswith('Bearer realm="stoa", error="invalid_token"')
            assert idp.jwks_fetches == fetches_at_start + 1  # one fetch, shared, still hanging
        assert len(sc.upstream.requests) == before
        assert wait_until(lambda: sc.get("/orders", headers=bearer(token)).status_code == 200, timeout=15)
        assert sc.upstream.requests[-1].headers["x-stoa-subject"] == "rotated"
