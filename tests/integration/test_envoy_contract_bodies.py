"""Contract-validated request bodies through the real Envoy: one hop, bounded, never passed unchecked.

The body travels in the ext_authz check (``with_request_body``, ``allow_partial_message: false``,
``max_request_bytes`` = the contract's limit) on either transport: under and at the limit it is
validated whole, over it Envoy answers 413 and nothing reaches the upstream, whatever the
encoding (content-length or chunked). When ext_proc decides instead (ext_authz failed open), its
check has its own buffer bounded by the same limit: the 4 KiB snapshot excerpt never decides.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.oidc import OidcServer
from tests.harness.procs import free_port
from tests.harness.sidecar import Sidecar

pytestmark = pytest.mark.integration

LIMIT = 8_192
EXCERPT = 4_096  # the default snapshot excerpt: bodies past it must still be checked whole

CONTRACT = """
name: orders-api
version: 1.0.0
tenant_id: acme
classification: H
required_policies: [rate-limit, auth-jwt]
status: published
endpoints:
  - path: /api/orders
    methods: [POST]
    backend_url: http://127.0.0.1:8000/api/orders
    input_schema:
      type: object
      properties:
        customer: {type: string, minLength: 1}
        amount: {type: number, minimum: 0}
      required: [customer, amount]
      additionalProperties: false
"""

# Classification H: a JWT caller and a rate limit, as the contract requires.
ROUTES = [{"name": "orders", "prefix": "/api/orders", "contract": "orders-api", "rate_limit": "100000/s"}]


def valid_body(size: int) -> bytes:
    """A schema-valid JSON object of exactly ``size`` bytes."""
    empty = len(json.dumps({"customer": "", "amount": 1}, separators=(",", ":")))
    body = json.dumps({"customer": "c" * (size - empty), "amount": 1}, separators=(",", ":")).encode()
    assert len(body) == size
    return body


def schema_invalid_body(size: int) -> bytes:
    """Well-formed JSON that breaks the schema (an undeclared field) past the excerpt size."""
    empty = len(json.dumps({"customer": "x", "amount": 1, "note": ""}, separators=(",", ":")))
    return json.dumps({"customer": "x", "amount": 1, "note": "n" * (size - empty)}, separators=(",", ":")).encode()


def malformed_body(size: int) -> bytes:
    """JSON whose syntax breaks only after the excerpt size."""
    return b'{"customer":"' + b"c" * (size - 20) + b'","amount":}'


CASES = [
    # (name, body, status)
    ("under-limit", valid_body(LIMIT - 1), 200),
    ("at-limit", valid_body(LIMIT), 200),
    ("over-limit", valid_body(LIMIT + 1), 413),
    ("far-over-limit", valid_body(8 * LIMIT), 413),
    ("schema-invalid-past-excerpt", schema_invalid_body(EXCERPT + 1_000), 422),
    ("malformed-past-excerpt", malformed_body(EXCERPT + 1_000), 400),
    ("small-valid", valid_body(64), 200),
]


def _settings(tmp: Path, idp: OidcServer) -> dict[str, Any]:
    (tmp / "orders.yaml").write_text(CONTRACT)
    return {"contracts.paths": [str(tmp)], "contracts.max_body_bytes": LIMIT,
            "identity.keycloak_url": idp.keycloak_url}


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcServer]:
    with OidcServer() as server:
        yield server


@pytest.fixture(scope="module")
def token(idp: OidcServer) -> str:
    return idp.issuer.token(sub="alice", azp="billing-app", tenant="acme")


def _post(sc: Sidecar, body: bytes, chunked: bool, token: str) -> httpx.Response:
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    if chunked:  # an iterator makes httpx send Transfer-Encoding: chunked
        return sc.post("/api/orders", content=iter([body[i:i + 1000] for i in range(0, len(body), 1000)]),
                       headers=headers)
    return sc.post("/api/orders", content=body, headers=headers)


@pytest.fixture(scope="module")
def sidecar(transport: str, tmp_path_factory: pytest.TempPathFactory, idp: OidcServer) -> Iterator[Sidecar]:
    tmp = tmp_path_factory.mktemp("contracts")
    with Sidecar(_settings(tmp, idp), routes=ROUTES, transport=transport) as sc:
        yield sc


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("name", "body", "status"), CASES, ids=[c[0] for c in CASES])
def test_contract_bodies_in_the_check(sidecar: Sidecar, token: str, name: str, body: bytes, status: int,
                                      chunked: bool) -> None:
    sidecar.upstream.clear()
    r = _post(sidecar, body, chunked, token)
    assert r.status_code == status, r.text[:300]
    if status == 200:
        (seen,) = sidecar.upstream.requests
        assert len(seen.body) == len(body)  # the whole body went on, after being checked whole
    else:
        assert sidecar.upstream.requests == []
    if status in (400, 422):
        assert r.json()["error"] in ("bad_request", "unprocessable_entity")


def test_a_contract_route_costs_one_hop_not_an_ext_proc_stream(sidecar: Sidecar, token: str) -> None:
    assert _post(sidecar, valid_body(1_024), False, token).status_code == 200
    assert _post(sidecar, schema_invalid_body(1_024), False, token).status_code == 422
    assert sidecar.envoy is not None
    stats = sidecar.envoy.stats("ext_proc")
    assert sum(v for k, v in stats.items() if k.endswith("streams_started")) == 0


@pytest.mark.parametrize("envoy_buffers", [True, False], ids=["with-check-body", "ext-proc-alone"])
@pytest.mark.parametrize(("name", "body", "status"), CASES, ids=[c[0] for c in CASES])
def test_when_ext_proc_decides_it_checks_the_whole_body_or_refuses(
        tmp_path: Path, idp: OidcServer, token: str, envoy_buffers: bool, name: str, body: bytes,
        status: int) -> None:
    """ext_authz cannot reach Link and fails open: ext_proc decides, and checks bodies past the excerpt."""
    envoy: dict[str, Any] = {"failure_mode": "open", "link_http": (f"127.0.0.1:{free_port()}",),
                             "ext_proc_prefixes": ("/api/orders",)}
    if not envoy_buffers:
        envoy["authz_body_prefixes"] = ()  # only ext_proc sees the body: its own bound must hold
    with Sidecar({**_settings(tmp_path, idp), "snapshots.body_excerpt_bytes": EXCERPT}, routes=ROUTES,
                 transport="http", envoy_options=envoy) as sc:
        r = _post(sc, body, False, token)
        assert r.status_code == status, r.text[:300]
        assert len(sc.upstream.requests) == (1 if status == 200 else 0)
