"""The Prometheus inventory the platform relies on: every family is on Link's registry, with its labels."""

from __future__ import annotations

import importlib

import pytest

from link.metrics import REGISTRY

# family (without _total) -> (owning module, declared label names; None when the owner's choice)
INVENTORY: dict[str, tuple[str, set[str] | None]] = {
    "stoa_link_requests": ("link.metrics", {"route", "tenant", "outcome"}),
    "stoa_link_request_seconds": ("link.metrics", {"route", "outcome"}),
    "stoa_link_decisions": ("link.metrics", {"entry", "outcome", "reason"}),
    "stoa_link_decision_seconds": ("link.metrics", {"entry"}),
    "stoa_link_phase_seconds": ("link.metrics", {"phase"}),
    "stoa_link_metering_queue_depth": ("link.metering.metrics", set()),
    "stoa_link_metering_spool_bytes": ("link.metering.metrics", set()),
    "stoa_link_metering_events_sent": ("link.metering.metrics", None),
    "stoa_link_metering_events_failed": ("link.metering.metrics", None),
    "stoa_link_snapshots_stored": ("link.snapshots.metrics", set()),
    "stoa_link_snapshots_purged": ("link.snapshots.metrics", {"reason"}),
    "stoa_link_snapshots_dropped": ("link.snapshots.metrics", {"reason"}),
    "stoa_link_snapshots_published": ("link.snapshots.metrics", {"result"}),
    "stoa_link_identity_jwks_fetches": ("link.identity.metrics", None),
    "stoa_link_policy_reloads": ("link.policy.metrics", None),
}


@pytest.mark.parametrize("family", sorted(INVENTORY))
def test_family_is_registered(family: str) -> None:
    module, labels = INVENTORY[family]
    importlib.import_module(module)
    assert family in {m.name for m in REGISTRY.collect()}, f"{family} missing from the registry ({module})"
    if labels is not None:
        collectors = REGISTRY._names_to_collectors
        collector = collectors.get(family) or collectors.get(f"{family}_total")
        assert set(getattr(collector, "_labelnames", ())) == labels
