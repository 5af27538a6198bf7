"""A contract's required policies, through real Envoy: the credential kind and the connection count.

Classification H (``rate-limit``, ``auth-jwt``) on /invoices, VH (adds ``mtls``,
``audit-logging``) on /payments. Envoy's listener here is plain HTTP, so no
request can carry a client certificate: VH traffic is refused whatever the token.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import yaml

from link.identity.apikeys import hash_api_key
from tests.harness.oidc import OidcServer
from tests.harness.procs import free_port
from tests.harness.sidecar import Sidecar

pytestmark = pytest.mark.integration

API_KEY = "sk-live-contract-0123456789abcdef"
ROUTES = [
    {"name": "invoices", "prefix": "/invoices", "contract": "billing-api", "tenant": "tenant-acme"},
    {"name": "payments", "prefix": "/payments", "contract": "payments-api", "tenant": "tenant-acme"},
    {"name": "api", "prefix": "/"},
]


def _contract(name: str, classification: str, policies: list[str], prefix: str) -> dict[str, object]:
    return {"name": name, "version": "1.0.0", "tenant_id": "tenant-acme", "classification": classification,
            "required_policies": policies, "status": "published",
            "endpoints": [{"path": f"{prefix}/{{id}}", "methods": ["GET"],
                           "backend_url": f"https://backend.internal{prefix}/{{id}}"}]}


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcServer]:
    with OidcServer() as server:
        yield server


@pytest.fixture(scope="module")
def sidecar(idp: OidcServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    base = tmp_path_factory.mktemp("contract-policies")
    contracts = base / "contracts"
    contracts.mkdir()
    (contracts / "billing.yaml").write_text(yaml.safe_dump(
        _contract("billing-api", "H", ["rate-limit", "auth-jwt"], "/invoices")))
    (contracts / "payments.yaml").write_text(yaml.safe_dump(
        _contract("payments-api", "VH", ["rate-limit", "auth-jwt", "mtls", "audit-logging"], "/payments")))
    keys = base / "api-keys.yaml"
    keys.write_text(yaml.safe_dump({hash_api_key(API_KEY): {"consumer": "partner", "tenant": "tenant-acme"}}))
    overrides = {
        "identity.keycloak_url": idp.keycloak_url,
        "identity.api_keys_file": str(keys),
        "contracts.paths": [str(contracts)],
        "ratelimit.tenant_default": "10000/min",
        # audit-logging: metering must be on with a broker (none listens here: events are spooled).
        "metering.enabled": True,
        "metering.bootstrap_servers": f"127.0.0.1:{free_port()}",
        "metering.spool_dir": str(base / "spool"),
    }
    with Sidecar(overrides, routes=ROUTES) as sc:
        yield sc


def test_envoy_h_contract_accepts_only_jwt_callers(idp: OidcServer, sidecar: Sidecar) -> None:
    before = len(sidecar.upstream.requests)
    token = idp.issuer.token(sub="alice", tenant="tenant-acme")
    cases = {
        "jwt": ({"authorization": f"Bearer {token}"}, 200),
        "api key": ({"x-api-key": API_KEY}, 401),
        "no credential": ({}, 401),
    }
    for name, (headers, status) in cases.items():
        r = sidecar.get("/invoices/inv-1", headers=headers)
        assert r.status_code == status, name
    refused = sidecar.get("/invoices/inv-1", headers={"x-api-key": API_KEY})
    assert refused.headers["www-authenticate"] == (
        'Bearer realm="stoa", error="invalid_token", '
        'error_description="contract billing-api requires a JWT bearer token"')
    assert len(sidecar.upstream.requests) == before + 1  # only the JWT caller reached the upstream
    assert sidecar.upstream.requests[-1].headers["x-stoa-subject"] == "alice"


def test_envoy_vh_contract_requires_a_client_certificate(idp: OidcServer, sidecar: Sidecar) -> None:
    before = len(sidecar.upstream.requests)
    token = idp.issuer.token(sub="alice", tenant="tenant-acme")
    no_cert = sidecar.get("/payments/p-1", headers={"authorization": f"Bearer {token}"})
    assert no_cert.status_code == 403
    assert "requires a verified client certificate" in no_cert.text
    # A client-sent certificate header is not a certificate (mtls_trust_xfcc is off).
    forged = sidecar.get("/payments/p-1", headers={"authorization": f"Bearer {token}",
                                                    "x-forwarded-client-cert": "URI=spiffe://acme/app"})
    assert forged.status_code == 403
    assert sidecar.get("/payments/p-1", headers={"x-api-key": API_KEY}).status_code == 401
    assert len(sidecar.upstream.requests) == before
    assert os.path.isdir(sidecar.settings.metering.spool_dir)  # the audit trail is being written
