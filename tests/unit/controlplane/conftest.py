"""Fixtures for the control-plane client tests: a local control plane and a sleep the test drives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.controlplane import ControlPlaneServer, GatedSleep


@pytest.fixture
def cp() -> Iterator[ControlPlaneServer]:
    with ControlPlaneServer(heartbeat_interval_s=7) as server:
        yield server


@pytest.fixture
def gated() -> GatedSleep:
    return GatedSleep()
