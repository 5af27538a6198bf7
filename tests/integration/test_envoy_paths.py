"""Path spellings through the real Envoy and Link: no spelling reaches a protected route anonymously.

Every request is written byte for byte on a socket (HTTP/1.1 origin-form and absolute-form, HTTP/2
with prior knowledge), so no client library normalizes anything on our behalf. The upstream stand-in
records what reached it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from link.paths import normalize_path
from tests.harness.oidc import OidcServer
from tests.harness.procs import wait_until
from tests.harness.rawhttp import Answer, http1, http2
from tests.harness.sidecar import Sidecar
from tests.path_spellings import SPELLINGS, Spelling

pytestmark = pytest.mark.integration

ASSETS = Path(__file__).resolve().parents[2] / "link" / "demo" / "assets"
ROUTES = [
    {"name": "public", "prefix": "/public", "anonymous": True, "tenant": "demo"},
    {"name": "invoices", "prefix": "/api/invoices", "contract": "billing-api"},
    {"name": "api", "prefix": "/api"},
]


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcServer]:
    with OidcServer() as server:
        yield server


@pytest.fixture(scope="module")
def credential(idp: OidcServer) -> dict[str, str]:
    # The demo contract (classification H) requires auth-jwt: a JWT, not an API key, is the credential.
    return {"authorization": f"Bearer {idp.issuer.token(tenant='tenant-acme', lifetime=3600)}"}


@pytest.fixture(scope="module")
def sidecar(idp: OidcServer) -> Iterator[Sidecar]:
    overrides = {
        "identity.keycloak_url": idp.keycloak_url,
        "contracts.paths": [str(ASSETS / "contracts")],
        "contracts.mode": "enforce",
        "ratelimit.tenant_default": "100000/min",  # the contract's rate-limit policy needs a limit
    }
    with Sidecar(overrides, routes=ROUTES, envoy_options={"ext_proc_prefixes": ("/api/invoices",)}) as sc:
        yield sc


def _path_of(target: str) -> str:
    return target.partition("?")[0]


def _is_public(path: str) -> bool:
    return path == "/public" or path.startswith("/public/")


def _check(sidecar: Sidecar, spelling: Spelling, answer: Answer, keyed: bool) -> None:
    """The whole contract of one spelling: who answers, what the upstream sees, never a 5xx."""
    seen = [_path_of(s.path) for s in sidecar.upstream.requests]
    where = f"{spelling.raw!r} (key: {keyed})"
    assert answer.status < 500, f"{where}: {answer.status} {answer.body[:200]!r}"
    if spelling.normalized is None:
        assert answer.status == 400, f"{where}: {answer.status}"
        assert seen == [], f"{where} reached the upstream as {seen}"
        # Both layers answer in the same JSON shape; only Link's refusals carry a request id
        # (Envoy refuses before it generates one).
        body = json.loads(answer.body)
        assert body["error"] == "bad_request" and body["reason"], body
        if spelling.refused_by == "link":
            assert body["request_id"] == answer.headers["x-request-id"], body
        return
    allowed = keyed or _is_public(spelling.normalized)
    if allowed and spelling.normalized.startswith(("/public", "/api/")):
        assert answer.status == 200, f"{where}: {answer.status} {answer.body[:300]!r}"
        # The gateway gets the one normalized spelling, which is a fixed point of Link's reading too.
        assert seen == [spelling.normalized], f"{where}: upstream saw {seen}"
        assert normalize_path(seen[0]) == seen[0]
    else:
        assert answer.status in (401, 403, 404), f"{where}: {answer.status}"
        assert seen == [], f"{where} reached the upstream anonymously as {seen}"


@pytest.mark.parametrize("spelling", SPELLINGS, ids=[s.raw for s in SPELLINGS])
def test_http1_spelling_anonymous(sidecar: Sidecar, spelling: Spelling) -> None:
    sidecar.upstream.clear()
    _check(sidecar, spelling, http1(sidecar.envoy.port, spelling.raw), keyed=False)  # type: ignore[union-attr]


@pytest.mark.parametrize("spelling", [s for s in SPELLINGS if s.normalized is None
                                      or s.normalized.startswith("/api/")], ids=lambda s: s.raw)
def test_http1_spelling_with_key(sidecar: Sidecar, credential: dict[str, str], spelling: Spelling) -> None:
    """With a credential, protected spellings reach the upstream on the normalized path; refusals stay 400."""
    sidecar.upstream.clear()
    answer = http1(sidecar.envoy.port, spelling.raw, credential)  # type: ignore[union-attr]
    _check(sidecar, spelling, answer, keyed=True)
    if answer.status == 200:
        assert sidecar.upstream.requests[-1].headers["x-stoa-tenant"] == "tenant-acme"


# RFC 9113 §8.3.1: a :path with whitespace or a fragment, or "*" for a GET, is malformed; the stream
# may be reset rather than answered.
_H2_MALFORMED = ("\t", "#", "*")


@pytest.mark.parametrize("spelling", [s for s in SPELLINGS if "://" not in s.raw], ids=lambda s: s.raw)
def test_h2c_spelling_anonymous(sidecar: Sidecar, spelling: Spelling) -> None:
    sidecar.upstream.clear()
    answer = http2(sidecar.envoy.port, spelling.raw)  # type: ignore[union-attr]
    if any(c in spelling.raw for c in _H2_MALFORMED):
        assert answer.status in (-1, 0, 400), answer
        assert sidecar.upstream.requests == []
        return
    _check(sidecar, spelling, answer, keyed=False)


@pytest.mark.parametrize("segments", [2_000, 20_000])
def test_very_long_paths_get_a_clean_answer(sidecar: Sidecar, segments: int) -> None:
    """Thousands of dot segments: Envoy and Link read them (or refuse them as too large), never a 5xx."""
    sidecar.upstream.clear()
    answer = http1(sidecar.envoy.port, "/public" + "/x/.." * segments + "/../api/invoices/inv-1001")  # type: ignore[union-attr]
    assert answer.status in (401, 414, 431), answer.status
    assert sidecar.upstream.requests == []


def test_contract_governs_a_post_spelled_around(sidecar: Sidecar, credential: dict[str, str]) -> None:
    """A contract-invalid POST reached through dot segments is still validated (422) and metered on its route."""
    outcomes: list = []

    class _Collector:
        def offer(self, outcome) -> None:  # type: ignore[no-untyped-def]
            outcomes.append(outcome)

    sidecar.link.app.add_outcome_sink(_Collector())
    invalid = json.dumps({"customer": 42}).encode()
    valid = json.dumps({"customer": "acme", "amount": 10}).encode()
    ids = []
    for target, body, expected in [
        ("/public/../api/invoices", invalid, 422),
        ("/public/%2e%2e/api//invoices", invalid, 422),
        ("/public/x/..\\..\\api/invoices", valid, 200),
    ]:
        sidecar.upstream.clear()
        answer = http1(sidecar.envoy.port, target,  # type: ignore[union-attr]
                       {**credential, "content-type": "application/json"}, method="POST", body=body)
        assert answer.status == expected, (target, answer.status, answer.body[:300])
        assert [s.path for s in sidecar.upstream.requests] == (["/api/invoices"] if expected == 200 else [])
        ids.append(answer.headers["x-request-id"])
    assert wait_until(lambda: {o.request_id for o in outcomes} >= set(ids), timeout=10)
    for o in (o for o in outcomes if o.request_id in ids):
        assert (o.route, o.tenant, o.path) == ("invoices", "tenant-acme", "/api/invoices"), o


def test_link_refusal_names_the_reason(sidecar: Sidecar) -> None:
    answer = http1(sidecar.envoy.port, "/public/%252e%252e/api/invoices/inv-1001")  # type: ignore[union-attr]
    assert answer.status == 400
    assert answer.headers["content-type"].startswith("application/json")
    body = json.loads(answer.body)
    assert body["error"] == "bad_request" and "double-encoded" in body["reason"]
    assert body["request_id"] == answer.headers["x-request-id"]
