"""Fixtures shared by the integration suites."""

from __future__ import annotations

import pytest

# Both decision paths Envoy's ext_authz can take; behavioural suites run on each.
TRANSPORTS = ("http", "grpc")


@pytest.fixture(scope="module", params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """The ext_authz transport of this run of the suite: ``http`` (http_service) or ``grpc``."""
    return str(request.param)
