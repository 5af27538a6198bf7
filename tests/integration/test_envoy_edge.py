"""What the real Envoy listener does before Link is asked: identity headers stripped whatever Link's
state, the client's request id set aside, HTTP/1.0 answered, header counts bounded with a 431."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from link.envoyconf import build_bootstrap, render_yaml
from link.envoyconf.edge import CLIENT_HEADER_LIMIT, CLIENT_REQUEST_ID_HEADER, UPSTREAM_HEADER_LIMIT
from link.envoyconf.from_settings import envoy_options
from tests.harness.envoy import EnvoyProcess, envoy_for
from tests.harness.link_server import link_settings
from tests.harness.procs import free_port
from tests.harness.rawhttp import Answer, http1, http2
from tests.harness.sidecar import Sidecar
from tests.harness.upstream import EchoUpstream, Seen

pytestmark = pytest.mark.integration

ASSETS = Path(__file__).resolve().parents[2] / "link" / "demo" / "assets"
API_KEY = "demo-key-acme-123"  # tenant-acme in the demo's api-keys.yaml
ROUTES = [
    {"name": "public", "prefix": "/public", "anonymous": True, "tenant": "demo"},
    {"name": "orders", "template": "/orders/{id}"},
]

# Every spelling a client could use to pass as a tenant: case, underscores, repeats, other Link headers.
SPOOFED = [
    ("x-stoa-tenant", "evil-1"),
    ("X-Stoa-Tenant", "evil-2"),
    ("X-STOA-TENANT", "evil-3"),
    ("x-stoa-tenant", "evil-4"),
    ("x_stoa_tenant", "evil-5"),
    ("X_Stoa_Tenant", "evil-6"),
    ("x-stoa_tenant", "evil-7"),
    ("x-stoa-consumer", "evil-8"),
    ("x_stoa_consumer", "evil-9"),
    ("x-stoa-subject", "evil-10"),
    ("x-stoa-decision", "evil-11"),
    ("x-forwarded-client-cert", "By=spiffe://evil;URI=spiffe://evil/ns/tenant-acme"),
    ("x-request-id", "client-chosen-id"),
]


def _identity_leaks(seen: Seen, extra_names: tuple[str, ...] = ()) -> list[str]:
    """Headers that reached the upstream and that a gateway could read as one of Link's."""
    owned = ("x-stoa-", "x-forwarded-client-cert", *extra_names)
    return [f"{k}: {v}" for k, v in seen.headers.items()
            if k.replace("_", "-").startswith(owned) and "evil" in v]


@pytest.fixture(scope="module")
def fail_open_envoy() -> Iterator[tuple[EnvoyProcess, EchoUpstream]]:
    """Nothing listens where Link should be, and Envoy is told to let requests through."""
    with EchoUpstream() as up, envoy_for([f"127.0.0.1:{free_port()}"], up.url, failure_mode="open") as envoy:
        yield envoy, up


@pytest.mark.parametrize("protocol", ["http1", "h2c"])
def test_fail_open_forwards_no_client_identity(fail_open_envoy: tuple[EnvoyProcess, EchoUpstream],
                                               protocol: str) -> None:
    envoy, up = fail_open_envoy
    up.clear()
    if protocol == "http1":
        answer = http1(envoy.port, "/orders/1", SPOOFED)
    else:  # HTTP/2 forbids upper-case names on the wire: the lower-case spellings are the whole class there
        answer = http2(envoy.port, "/orders/1", [(k.lower(), v) for k, v in SPOOFED])
    assert answer.status == 200, answer  # Link is down and fail-open lets it through...
    seen = up.requests[-1]
    assert seen.headers.get("x-envoy-auth-failure-mode-allowed") == "true"
    assert _identity_leaks(seen) == []  # ...with no identity the client chose
    assert seen.headers["x-request-id"] != "client-chosen-id"
    assert seen.headers[CLIENT_REQUEST_ID_HEADER] == "client-chosen-id"
    assert envoy.stats("dropped_headers_with_underscores")  # Envoy counted the drops


def test_fail_open_strips_identity_headers_named_in_settings() -> None:
    """Identity header names come from Link's settings, also outside the strip prefix."""
    settings = link_settings({"identity.header_tenant": "x-tenant-id", "identity.header_consumer": "x-consumer"})
    port = free_port()
    with EchoUpstream() as up:
        opts = envoy_options(settings, listen_address="127.0.0.1", listen_port=port, admin_port=0,
                             link=(f"127.0.0.1:{free_port()}",), upstream=up.url, failure_mode="open")
        with EnvoyProcess(render_yaml(build_bootstrap(opts)), port):
            spoof = [("x-tenant-id", "evil-a"), ("X-Tenant-Id", "evil-b"), ("x_tenant_id", "evil-c"),
                     ("x-consumer", "evil-d"), ("x-stoa-tenant", "evil-e")]
            answer = http1(port, "/anything", spoof)
            assert answer.status == 200
            assert _identity_leaks(up.requests[-1], ("x-tenant-id", "x-consumer")) == []


@pytest.fixture(scope="module")
def sidecar() -> Iterator[Sidecar]:
    with Sidecar({"identity.api_keys_file": str(ASSETS / "api-keys.yaml")}, routes=ROUTES) as sc:
        yield sc


@pytest.mark.parametrize(("target", "key", "tenant"), [("/public/a", False, "demo"), ("/orders/1", True, "tenant-acme")])
def test_link_up_sets_identity_and_client_spellings_are_gone(sidecar: Sidecar, target: str, key: bool,
                                                             tenant: str) -> None:
    sidecar.upstream.clear()
    answer = http1(sidecar.envoy.port, target, SPOOFED + ([("x-api-key", API_KEY)] if key else []))  # type: ignore[union-attr]
    assert answer.status == 200
    seen = sidecar.upstream.requests[-1]
    assert seen.headers["x-stoa-tenant"] == tenant
    assert _identity_leaks(seen) == []
    assert answer.headers["x-request-id"] == seen.headers["x-request-id"] != "client-chosen-id"


# -- HTTP/1.0 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "headers", "status"), [
    ("/public/h10", [], 200),  # no Host: the default host
    ("/public/h10", [("Host", "api.example.com")], 200),
    ("/orders/1", [], 401),  # refused by Link, still a full HTTP/1.0 answer
    ("/public/%2e%2e/orders/1", [], 401),
    ("/public/..%2forders/1", [], 400),
])
def test_http10_gets_an_answer(sidecar: Sidecar, target: str, headers: list[tuple[str, str]], status: int) -> None:
    sidecar.upstream.clear()
    answer = http1(sidecar.envoy.port, target, headers, version="HTTP/1.0")  # type: ignore[union-attr]
    assert answer.status == status, answer
    if status == 200:
        seen = sidecar.upstream.requests[-1]
        assert seen.headers["host"] == (dict(headers).get("Host") or "http10.invalid")
        assert seen.headers["x-stoa-tenant"] == "demo"
    else:
        assert sidecar.upstream.requests == []
    if status == 401:
        assert json.loads(answer.body)["error"] == "unauthorized"


def test_http10_post_with_body(sidecar: Sidecar) -> None:
    sidecar.upstream.clear()
    answer = http1(sidecar.envoy.port, "/public/form", [], method="POST", body=b"a=1",  # type: ignore[union-attr]
                   version="HTTP/1.0")
    assert answer.status == 200
    assert sidecar.upstream.requests[-1].body == b"a=1"


# -- header count --------------------------------------------------------------------------------

# Header entries the client sends, around the limit. http1() always adds Host and Connection;
# http2() always sends the four pseudo-headers.
_TOTALS = (50, *range(CLIENT_HEADER_LIMIT - 10, CLIENT_HEADER_LIMIT + 3), 90, 95, 96, 97, 98, 99, 100, 101, 150, 400)
_FIXED = {"http1": 2, "h2c": 4}


@pytest.mark.parametrize("protocol", ["http1", "h2c"])
@pytest.mark.parametrize(("target", "key"), [("/public/h", False), ("/orders/1", True)])
def test_header_count_is_a_clean_431_or_a_full_pass(sidecar: Sidecar, protocol: str, target: str, key: bool) -> None:
    """Below one sharp limit a request passes whole, with room for Link's headers; above it, 431; never a 5xx.

    The limit counts Envoy's header map (pseudo-headers and Envoy's own x-request-id and
    x-forwarded-proto included), so the client's share is a few headers under CLIENT_HEADER_LIMIT.
    Past Envoy's own max_headers_count the codec refuses before any filter: still a JSON 431 on
    HTTP/1, a stream reset on HTTP/2 (as its documentation says).
    """
    send = http1 if protocol == "http1" else http2
    statuses: dict[int, int] = {}
    for total in _TOTALS:
        sidecar.upstream.clear()
        own = [(f"x-h{i}", "v") for i in range(total - _FIXED[protocol] - (1 if key else 0))]
        answer: Answer = send(sidecar.envoy.port, target, own + ([("x-api-key", API_KEY)] if key else []))  # type: ignore[union-attr]
        statuses[total] = answer.status
        if answer.status == 200:
            seen = sidecar.upstream.requests[-1]
            assert all(k in seen.headers for k, _ in own)
            assert seen.headers["x-stoa-tenant"] == ("tenant-acme" if key else "demo")
            assert len(seen.headers) <= UPSTREAM_HEADER_LIMIT
        else:
            codec_refusal = total > UPSTREAM_HEADER_LIMIT - 4
            if protocol == "h2c" and codec_refusal:
                assert answer.status in (0, -1, 431), (total, answer)
            else:
                assert answer.status == 431, (total, answer)
            if answer.status == 431:
                assert json.loads(answer.body)["error"] == "request_header_fields_too_large"
            assert sidecar.upstream.requests == []
    passed = [t for t, status in statuses.items() if status == 200]
    threshold = max(passed)
    assert passed == [t for t in _TOTALS if t <= threshold], statuses  # one sharp limit
    assert CLIENT_HEADER_LIMIT - 8 <= threshold < CLIENT_HEADER_LIMIT, statuses
