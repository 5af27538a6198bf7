"""Responses through ext_proc, through the real Envoy: every one arrives whole, large or not.

Link reads a response body only to snapshot it. Any other body it declines when it answers the
response's headers (body mode NONE), so Envoy streams it to the client unbuffered; a body Link
snapshots comes in chunks (STREAMED), never buffered whole.

The regression: with the response body buffered partially, a response larger than the stream's
buffer limit (ext_authz lowers that limit to a contract's body limit when it buffers the request
body) sometimes never ended. Envoy sent the part that fit to ext_proc and, after the answer, never
the end of the stream: the client waited for the last chunk until its own timeout (about 1 request
in 15 on a loaded machine). Each test below sends enough such responses to meet it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.harness.oidc import OidcServer
from tests.harness.procs import free_port
from tests.harness.sidecar import Sidecar

pytestmark = pytest.mark.integration

LIMIT = 8_192
REPEAT = 25
TOKEN = "admin-token-for-tests"

CONTRACT = """
name: notes-api
version: 1.0.0
tenant_id: acme
classification: H
required_policies: [rate-limit, auth-jwt]
status: published
endpoints:
  - path: /api/notes
    methods: [POST]
    backend_url: http://127.0.0.1:8000/api/notes
    input_schema:
      type: object
      properties: {text: {type: string}}
      required: [text]
"""


def _note(size: int) -> bytes:
    empty = len(json.dumps({"text": ""}, separators=(",", ":")))
    return json.dumps({"text": "n" * (size - empty)}, separators=(",", ":")).encode()


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcServer]:
    with OidcServer() as server:
        yield server


@pytest.fixture(scope="module")
def contract_sidecar(tmp_path_factory: pytest.TempPathFactory, idp: OidcServer) -> Iterator[Sidecar]:
    """ext_authz buffers the body up to the contract's limit and cannot reach Link (it fails open),
    so ext_proc decides: the stream's buffer limit is the contract's 8 KiB, the echoed response larger."""
    tmp = tmp_path_factory.mktemp("contracts")
    (tmp / "notes.yaml").write_text(CONTRACT)
    settings = {"contracts.paths": [str(tmp)], "contracts.max_body_bytes": LIMIT,
                "identity.keycloak_url": idp.keycloak_url}
    routes = [{"name": "notes", "prefix": "/api/notes", "contract": "notes-api", "rate_limit": "100000/s"}]
    envoy = {"failure_mode": "open", "link_http": (f"127.0.0.1:{free_port()}",),
             "ext_proc_prefixes": ("/api/notes",)}
    with Sidecar(settings, routes=routes, transport="http", envoy_options=envoy) as sc:
        yield sc


def _ext_proc_stats(sc: Sidecar) -> dict[str, int]:
    assert sc.envoy is not None
    prefix = "http.ingress.ext_proc.stoa_link."
    return {k.removeprefix(prefix): v for k, v in sc.envoy.stats(prefix).items()}


@pytest.mark.parametrize("size", [LIMIT - 1, 100], ids=["response-over-the-buffer-limit", "small"])
def test_a_decided_response_arrives_whole_and_its_body_skips_ext_proc(
        contract_sidecar: Sidecar, idp: OidcServer, size: int) -> None:
    token = idp.issuer.token(sub="alice", azp="notes-app", tenant="acme")
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    body = _note(size)
    before = _ext_proc_stats(contract_sidecar)
    with httpx.Client(base_url=contract_sidecar.url, timeout=5.0) as client:
        for _ in range(REPEAT):
            r = client.post("/api/notes", content=body, headers=headers)
            assert r.status_code == 200, r.text[:300]
            assert json.loads(r.json()["body"]) == json.loads(body)  # the echo, whole
            if size == LIMIT - 1:
                assert len(r.content) > LIMIT  # larger than the stream's buffer limit
    after = _ext_proc_stats(contract_sidecar)
    # Request headers, request body, response headers: no response body message, no failure.
    assert after["stream_msgs_received"] - before["stream_msgs_received"] == 3 * REPEAT
    assert after["streams_failed"] == before["streams_failed"]
    assert after["message_timeouts"] == before["message_timeouts"]


@pytest.fixture(scope="module")
def snapshot_sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    db = tmp_path_factory.mktemp("snapshots") / "snapshots.db"
    overrides: dict[str, Any] = {"snapshots.enabled": True, "snapshots.db_path": str(db),
                                 "snapshots.admin_token": TOKEN, "snapshots.capture": "ext_proc"}
    routes = [{"name": "orders", "prefix": "/orders", "anonymous": True, "tenant": "acme", "snapshots": True}]
    with Sidecar(overrides, routes=routes, envoy_options={"ext_proc_prefixes": ("/orders",)}) as sc:
        yield sc


def _snapshots(sc: Sidecar) -> list[dict[str, Any]]:
    r = httpx.get(sc.link.admin_url + "/admin/snapshots", params={"limit": "100"},
                  headers={"authorization": f"Bearer {TOKEN}"}, timeout=5)
    return list(r.json()["snapshots"])


@pytest.mark.parametrize("dribble", [False, True], ids=["one-write", "in-parts"])
def test_a_large_error_response_that_is_snapshotted_arrives_whole(snapshot_sidecar: Sidecar, dribble: bool) -> None:
    """A 1.2 MB 502, past Envoy's default 1 MiB buffer: streamed to Link in chunks, whole to the client."""
    payload = b"x" * 1_200_000
    path = "/orders/status/502" + ("?dribble=1" if dribble else "")
    before = len(_snapshots(snapshot_sidecar))
    repeat = 3 if dribble else 10
    with httpx.Client(base_url=snapshot_sidecar.url, timeout=10.0) as client:
        for _ in range(repeat):
            r = client.post(path, content=payload, headers={"content-type": "text/plain"})
            assert r.status_code == 502
            assert len(r.json()["body"]) == len(payload)
    deadline = time.monotonic() + 10
    while len(_snapshots(snapshot_sidecar)) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    latest = _snapshots(snapshot_sidecar)
    assert len(latest) > before, "no snapshot of the 502"
    assert {s["response_status"] for s in latest} == {502}


def test_a_large_success_on_a_snapshot_route_skips_ext_proc(snapshot_sidecar: Sidecar) -> None:
    before = _ext_proc_stats(snapshot_sidecar)
    payload = b"y" * 1_200_000
    with httpx.Client(base_url=snapshot_sidecar.url, timeout=10.0) as client:
        for _ in range(10):
            r = client.post("/orders/ok", content=payload, headers={"content-type": "text/plain"})
            assert r.status_code == 200 and len(r.json()["body"]) == len(payload)
    after = _ext_proc_stats(snapshot_sidecar)
    # The request's headers and body (partially buffered: 1 MiB), the response's headers; no response body.
    assert after["stream_msgs_received"] - before["stream_msgs_received"] == 3 * 10
