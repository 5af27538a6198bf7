"""Identity against a real OIDC provider process (PyPI oidc-provider-mock): tokens from its own flow."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from link.model import CredentialKind, Request, RequestContext, RouteMatch
from link.pipeline.identity import IdentityPhase
from tests.harness.link_server import link_settings
from tests.harness.oidc import OidcProviderMock

pytestmark = pytest.mark.integration


@pytest.fixture
def provider() -> Iterator[OidcProviderMock]:
    with OidcProviderMock() as p:
        yield p


def ctx(token: str) -> RequestContext:
    req = Request(method="GET", path="/x", headers={"authorization": f"Bearer {token}"})
    return RequestContext(request=req, route=RouteMatch(name="api"))


async def test_oidc_provider_mock_tokens_are_verified_through_discovery(provider: OidcProviderMock) -> None:
    settings = link_settings(
        {
            "identity.issuers": [{"issuer": provider.url, "audiences": ["billing-app"]}],
            "identity.jwks_min_refresh_interval_s": 0.2,
        }
    )
    phase = IdentityPhase(settings)
    await phase.start()
    try:
        assert phase.readiness()[0] is True
        c = ctx(provider.id_token("alice", "billing-app", {"tenant": "acme"}))
        assert await phase(c) is None
        p = c.principal
        assert (p.kind, p.subject, p.tenant, p.issuer) == (CredentialKind.JWT, "alice", "acme", provider.url)

        other = await phase(ctx(provider.id_token("bob", "crm-app")))
        assert other is not None and (other.http_status, other.reason) == (401, "wrong_audience")

        # Restarting the provider gives it a new signing key: a rotation, with tokens that carry no kid.
        provider.stop()
        provider.start()
        await asyncio.sleep(0.25)  # past the minimum refresh interval
        c = ctx(provider.id_token("carol", "billing-app"))
        assert await phase(c) is None and c.principal.subject == "carol"
    finally:
        await phase.stop()
