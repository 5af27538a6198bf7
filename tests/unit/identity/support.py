"""Helpers for the identity unit tests: an in-memory issuer served through httpx.MockTransport."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from link.model import Request, RequestContext, RouteMatch
from link.pipeline.identity import IdentityPhase
from link.settings import Settings, load_settings
from tests.harness.oidc import Issuer, mock_transport

ISSUER_URL = "https://idp.example.test/realms/stoa"


class IdpDouble:
    """An issuer plus the knobs of its fake network: fetch counts and an outage switch."""

    def __init__(self) -> None:
        self.issuer = Issuer(ISSUER_URL)
        self.counts: Counter[str] = Counter()
        self.down = threading.Event()
        self.transport = mock_transport(self.issuer, self.counts, self.down)

    @property
    def jwks_fetches(self) -> int:
        return self.counts["/realms/stoa/protocol/openid-connect/certs"]


@pytest.fixture
def idp() -> IdpDouble:
    return IdpDouble()


def identity_settings(**identity: Any) -> Settings:
    base: dict[str, Any] = {"issuers": [{"issuer": ISSUER_URL}], "jwks_min_refresh_interval_s": 0}
    base.update(identity)
    return load_settings(env={}, overrides={f"identity.{k}": v for k, v in base.items()})


PhaseFactory = Callable[..., IdentityPhase]


@pytest.fixture
def make_phase(idp: IdpDouble) -> PhaseFactory:
    def make(**identity: Any) -> IdentityPhase:
        return IdentityPhase(identity_settings(**identity), transport=idp.transport)

    return make


def ctx_for(
    headers: dict[str, str] | None = None, route: RouteMatch | None = None, **request: Any
) -> RequestContext:
    req = Request(
        method="GET",
        path="/invoices/1",
        headers={k.lower(): v for k, v in (headers or {}).items()},
        **request,
    )
    return RequestContext(request=req, route=route if route is not None else RouteMatch(name="invoices"))


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
