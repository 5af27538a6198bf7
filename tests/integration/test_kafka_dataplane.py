"""Metering end to end: client -> Envoy -> Link (ext_authz + access-log feed) -> tansu.

Under concurrent load, every request Envoy answers — allowed, refused by Link,
failed upstream — becomes exactly one metering event.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.kafka import TansuBroker, TopicReader
from tests.harness.sidecar import Sidecar

pytestmark = pytest.mark.integration

ROUTES = [
    {"name": "public", "prefix": "/public", "anonymous": True, "tenant": "demo", "api": "demo-api"},
    {"name": "orders", "template": "/orders/{id}", "methods": ["GET"]},
]
# path -> (expected HTTP status, expected metering status)
MIX = {
    "/public/items": (200, "success"),
    "/orders/42": (401, "unauthenticated"),
    "/public/status/503": (503, "error"),
}


def _send(url: str, paths: list[str]) -> list[tuple[str, int, str]]:
    out = []
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for path in paths:
            r = client.get(path)
            out.append((path, r.status_code, r.headers["x-request-id"]))
    return out


async def _read(bootstrap: str, expected: int) -> list[Any]:
    async with TopicReader(bootstrap, "stoa.metering") as reader:
        await reader.read_until(lambda m: len(m) >= expected, within_s=30)
        await reader.poll(500)  # a duplicate would show up here
        return reader.messages


def test_kafka_one_event_per_request_through_envoy_under_load(tmp_path: Path) -> None:
    per_kind, workers = 300, 8
    paths = [p for p in MIX for _ in range(per_kind)]
    chunks = [paths[i::workers] for i in range(workers)]
    with TansuBroker() as broker, Sidecar(
        {
            "metering.enabled": True,
            "metering.bootstrap_servers": broker.bootstrap,
            "metering.spool_dir": str(tmp_path / "spool"),
            "metering.linger_ms": 5,
        },
        routes=ROUTES,
    ) as sc:
        with ThreadPoolExecutor(workers) as pool:
            sent = [row for rows in pool.map(lambda c: _send(sc.url, c), chunks) for row in rows]
        messages = asyncio.run(_read(broker.bootstrap, len(sent)))
        assert sc.envoy is not None
        als = sc.envoy.stats("access_logs")

    assert Counter(status for _, status, _ in sent) == Counter({s: per_kind for s, _ in MIX.values()})
    events = [json.loads(m.value) for m in messages]
    keys = {e["request_id"]: m.key for e, m in zip(events, messages, strict=True)}
    assert len(events) == len(sent)  # one event per request: none lost, none doubled
    assert len({e["event_id"] for e in events}) == len(sent)
    by_request = {e["request_id"]: e for e in events}
    assert set(by_request) == {rid for _, _, rid in sent}
    for path, status, rid in sent:
        event = by_request[rid]
        assert event["http_status"] == status and event["status"] == MIX[path][1], (path, event)
        assert event["method"] == "GET" and event["mode"] == "sidecar"
        if path.startswith("/public"):
            assert event["tenant_id"] == "demo" and event["api"] == "demo-api" and event["route"] == "/public"
            assert keys[rid] == b"demo"
        else:
            assert event["route_name"] == "orders"
        assert event["latency_ms"] > 0
    # Envoy's own account: its access-log buffer never overflowed.
    dropped = {k: v for k, v in als.items() if k.endswith("logs_dropped")}
    assert dropped and not any(dropped.values()), als
