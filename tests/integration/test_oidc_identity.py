"""Identity against a Keycloak-shaped issuer over real HTTP, inside a running Link.

The issuer (tests/harness/oidc.py) serves discovery and JWKS on a loopback port
and signs tokens; Link runs whole in a background thread (LinkThread).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from link.model import Decision, Request
from tests.harness.link_server import LinkThread, link_settings
from tests.harness.oidc import KeyPair, OidcServer
from tests.harness.procs import wait_until

pytestmark = pytest.mark.integration

ROUTES = [{"name": "api", "prefix": "/"}]


@pytest.fixture
def idp() -> Iterator[OidcServer]:
    with OidcServer() as server:
        yield server


def start_link(idp: OidcServer, **identity: Any) -> LinkThread:
    overrides = {
        "identity.keycloak_url": idp.keycloak_url,
        **{f"identity.{k}": v for k, v in identity.items()},
    }
    return LinkThread(link_settings(overrides, ROUTES)).start()


def decide(link: LinkThread, token: str) -> Decision:
    req = Request(method="GET", path="/invoices", headers={"authorization": f"Bearer {token}"})
    return link.call(link.app.pipeline.decide(req))


def test_oidc_discovery_and_a_valid_token(idp: OidcServer) -> None:
    link = start_link(idp)
    try:
        d = decide(
            link, idp.issuer.token(sub="alice", azp="billing-app", tenant="acme", scope="invoices:read")
        )
        assert d.allowed
        assert d.upstream_headers["x-stoa-tenant"] == "acme"
        assert (d.record.consumer, d.record.subject, d.record.scopes) == (
            "billing-app",
            "alice",
            ("invoices:read",),
        )
        assert idp.counts["/realms/stoa/.well-known/openid-configuration"] == 1
        assert idp.jwks_fetches == 1
    finally:
        link.stop()


def test_oidc_key_rotation_while_link_runs(idp: OidcServer) -> None:
    link = start_link(idp, jwks_min_refresh_interval_s=0.2)
    try:
        old_key = idp.issuer.active
        cached = idp.issuer.token(sub="before")
        assert decide(link, cached).allowed

        idp.issuer.rotate("ES256", keep_old=False)
        time.sleep(0.25)  # past the minimum refresh interval
        assert decide(link, idp.issuer.token(sub="after")).allowed
        assert idp.jwks_fetches == 2

        assert decide(link, cached).allowed  # verified before: served from the cache
        late = decide(link, idp.issuer.token(key=old_key, sub="late"))
        assert (late.http_status, late.reason) == (401, "unknown_key")
    finally:
        link.stop()


def test_oidc_flood_of_unknown_kids_fetches_jwks_once_per_interval(idp: OidcServer) -> None:
    interval = 1.0
    link = start_link(idp, jwks_min_refresh_interval_s=interval)
    strangers = [KeyPair.generate("ES256") for _ in range(10)]
    tokens = [strangers[i % 10].sign(idp.issuer.claims(sub=f"u{i}")) for i in range(300)]

    async def flood() -> list[Decision]:
        reqs = [Request(method="GET", path="/x", headers={"authorization": f"Bearer {t}"}) for t in tokens]
        return await asyncio.gather(*(link.app.pipeline.decide(r) for r in reqs))

    try:
        assert idp.jwks_fetches == 1
        time.sleep(interval + 0.05)
        started = time.monotonic()
        first = link.call(flood())
        second = link.call(flood())
        if time.monotonic() - started < interval:  # both floods inside one interval (the normal case)
            assert idp.jwks_fetches == 2
        assert idp.jwks_fetches <= 3
        for d in first + second:
            assert (d.http_status, d.reason) == (401, "unknown_key")
        assert decide(link, idp.issuer.token()).allowed
    finally:
        link.stop()


def test_oidc_provider_down_after_start_cached_keys_keep_working(idp: OidcServer) -> None:
    link = start_link(idp, jwks_min_refresh_interval_s=0.05, jwks_fetch_timeout_s=0.5)
    try:
        seen = idp.issuer.token(sub="seen")
        assert decide(link, seen).allowed
        with idp.down():
            assert decide(link, seen).allowed
            assert decide(link, idp.issuer.token(sub="new-but-known-key")).allowed
            stranger = decide(link, KeyPair.generate().sign(idp.issuer.claims()))
            assert (stranger.http_status, stranger.reason) == (401, "unknown_key")
            ready, details = link.app.readiness()
            assert ready and details["identity"]["ready"] is True
    finally:
        link.stop()


def test_oidc_provider_down_at_start_readiness_says_so(idp: OidcServer) -> None:
    idp.stop()
    link = start_link(idp, jwks_min_refresh_interval_s=0.05, jwks_fetch_timeout_s=0.5)
    try:
        r = httpx.get(f"{link.admin_url}/health/ready", timeout=5)
        assert r.status_code == 503
        check = r.json()["checks"]["identity"]
        assert check["ready"] is False and "no keys" in check["detail"]
        d = decide(link, idp.issuer.token())
        assert (d.http_status, d.reason) == (503, "keys_unavailable")

        idp.start()
        assert wait_until(
            lambda: httpx.get(f"{link.admin_url}/health/ready", timeout=5).status_code == 200, timeout=10
        )
        assert decide(link, idp.issuer.token()).allowed
    finally:
        link.stop()
