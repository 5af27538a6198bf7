"""Fixtures of the Kubernetes source tests: the local API server and sources started against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from link.registry.kubernetes import KubernetesSource
from link.registry.registry import ToolRegistry
from link.settings import RegistrySettings
from tests.harness.kube_api import FakeKubeApi, fake_kube_api
from tests.unit.registry.kube_support import TOKEN, Factory, client_for


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    with fake_kube_api(token=TOKEN) as api:
        yield api


@pytest.fixture
async def make_source(kube: FakeKubeApi) -> AsyncIterator[Factory]:
    started: list[KubernetesSource] = []

    async def make(namespaces: list[str] | None = None, token: str = TOKEN,
                   **kw: Any) -> tuple[KubernetesSource, ToolRegistry]:
        registry = ToolRegistry()
        settings = RegistrySettings(source="kubernetes", namespaces=namespaces or [])
        kw.setdefault("backoff_initial_s", 0.02)
        kw.setdefault("backoff_max_s", 0.2)
        src = KubernetesSource(registry, settings, client_for(kube, token), **kw)
        started.append(src)
        await src.start()
        return src, registry

    yield make
    for src in started:
        await src.stop()
        assert src.threads_alive() == []
