"""The built-in default policy through real Envoy: policy on, no policy.paths (a fresh install).

Table-driven over credentials and routes: callers with a verified API key pass
on every route, callers without one only on the route declared anonymous; no
request gets the 503 "no policy loaded" a fresh install used to answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import yaml

from link.identity.apikeys import hash_api_key
from tests.harness.sidecar import Sidecar

pytestmark = pytest.mark.integration

KEY = "default-policy-key-51c0"
ROUTES = [
    {"name": "status", "prefix": "/status", "anonymous": True},
    {"name": "invoices", "prefix": "/invoices", "tenant": "acme"},
]


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    keys = tmp_path_factory.mktemp("keys") / "keys.yaml"
    keys.write_text(yaml.safe_dump({hash_api_key(KEY): {"consumer": "billing-app", "tenant": "acme"}}))
    with Sidecar({"policy.enabled": True, "identity.api_keys_file": str(keys)}, routes=ROUTES) as sc:
        yield sc


@pytest.mark.parametrize(("path", "headers", "status"), [
    ("/status", {}, 200),  # anonymous route
    ("/status", {"x-api-key": KEY}, 200),
    ("/invoices/1", {"x-api-key": KEY}, 200),
    ("/somewhere/else", {"x-api-key": KEY}, 200),  # no route: any verified caller
    ("/invoices/1", {}, 401),
    ("/invoices/1", {"x-api-key": "wrong"}, 401),
    ("/somewhere/else", {}, 401),  # no route is not anonymous
])
def test_default_policy_through_envoy(sidecar: Sidecar, path: str, headers: dict[str, str], status: int) -> None:
    sidecar.upstream.clear()
    r = sidecar.get(path, headers=headers)
    assert r.status_code == status, r.text
    assert len(sidecar.upstream.requests) == (1 if status == 200 else 0)


def test_ready_with_the_builtin_revision(sidecar: Sidecar) -> None:
    ready = httpx.get(f"{sidecar.link.admin_url}/health/ready", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["checks"]["policy"] == {"ready": True, "detail": "revision builtin-default"}
