"""The Redis rate-limit backend against a real redis-server: one budget, one round trip, no stalls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from link.model import ANONYMOUS, Decision, Request, RequestContext, RouteMatch
from link.pipeline.ratelimit import RateLimitPhase
from link.settings import load_settings
from tests.harness.redis import RedisServer, redis_binary

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(redis_binary() is None, reason="redis-server is not installed"),
]

TIMEOUT_MS = 100
# Slack over the Redis timeout for scheduling on a busy machine. Without the
# timeout a frozen Redis would hold a check for the 1 s socket timeout (or forever).
SLACK_S = 0.8  # below the 1 s socket timeout, so the assertion still proves the Redis timeout cut in


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def phase(url: str, mode: str = "local", **ratelimit: Any) -> RateLimitPhase:
    overrides = {
        "ratelimit.backend": "redis", "ratelimit.redis_url": url, "ratelimit.redis_failure_mode": mode,
        "ratelimit.redis_timeout_ms": TIMEOUT_MS, "ratelimit.redis_retry_s": 0.2,
    }
    overrides.update({f"ratelimit.{k}": v for k, v in ratelimit.items()})
    return RateLimitPhase(load_settings(env={}, overrides=overrides))


def ctx(tenant: str, route_limit: str | None = None) -> RequestContext:
    route = RouteMatch(name=f"{tenant}-api", tenant=tenant, anonymous=True, rate_limit=route_limit)
    request = Request(method="GET", path="/", headers={})
    return RequestContext(request=request, route=route, principal=ANONYMOUS)


async def allowed(p: RateLimitPhase, tenant: str, route_limit: str | None = None) -> bool:
    return await p(ctx(tenant, route_limit)) is None


async def test_two_links_share_one_budget_per_tenant(redis_server: RedisServer) -> None:
    tenants = "{acme: 5/hour, globex: 3/hour}"
    a, b = phase(redis_server.url, tenants=tenants), phase(redis_server.url, tenants=tenants)
    await a.start()
    await b.start()
    try:
        counts = {"acme": 0, "globex": 0}
        for i in range(12):  # alternate replicas and tenants
            for tenant in counts:
                counts[tenant] += await allowed(a if i % 2 else b, tenant)
        assert counts == {"acme": 5, "globex": 3}
    finally:
        await a.stop()
        await b.stop()


async def test_concurrent_checks_never_overspend(redis_server: RedisServer) -> None:
    # A generous timeout: this is about atomicity, and a fallback to local buckets would blur it.
    a, b = (phase(redis_server.url, tenant_default="10/hour", redis_timeout_ms=2000) for _ in range(2))
    await a.start()
    await b.start()
    try:
        results = await asyncio.gather(*(allowed(a if i % 2 else b, "acme") for i in range(60)))
        assert a.redis is not None and a.redis.available
        assert b.redis is not None and b.redis.available
        assert sum(results) == 10
    finally:
        await a.stop()
        await b.stop()


async def test_a_refused_request_spends_nothing_in_redis(redis_server: RedisServer) -> None:
    p = phase(redis_server.url, tenant_default="10/hour")
    await p.start()
    try:
        results = [await allowed(p, "acme", route_limit="2/hour") for _ in range(4)]
        assert results == [True, True, False, False]
        c = ctx("acme")  # same tenant, no route limit: 8 tokens left, not 6
        assert await p(c) is None
        assert c.response_headers["ratelimit-remaining"] == "7"
    finally:
        await p.stop()


async def test_one_round_trip_per_check_whatever_the_number_of_buckets(redis_server: RedisServer) -> None:
    p = phase(redis_server.url, tenant_default="100/min", consumer_default="50/min")
    await p.start()
    try:
        before = redis_server.command_calls()
        for _ in range(20):
            assert await allowed(p, "acme", route_limit="30/min")  # three buckets each
        after = redis_server.command_calls()
    finally:
        await p.stop()
    delta = {cmd: after.get(cmd, 0) - before.get(cmd, 0) for cmd in after}
    assert delta.pop("evalsha") == 20
    # Our own INFO client: its connection handshake and the first INFO.
    assert delta.pop("info") == 1
    assert delta.pop("hello", 0) <= 1
    # What is left ran inside the script (one TIME, one MGET, one SET per bucket per check).
    assert {cmd: n for cmd, n in delta.items() if n} == {"time": 20, "mget": 20, "set": 60}


async def test_script_cache_flush_is_survived(redis_server: RedisServer) -> None:
    p = phase(redis_server.url, tenant_default="3/hour")
    await p.start()
    try:
        assert await allowed(p, "acme")
        with redis_server.client() as c:
            c.script_flush()
        assert [await allowed(p, "acme") for _ in range(3)] == [True, True, False]
        assert p.redis is not None and p.redis.available
    finally:
        await p.stop()


async def timed(p: RateLimitPhase, tenant: str) -> tuple[Decision | None, float]:
    start = time.monotonic()
    decision = await p(ctx(tenant))
    return decision, time.monotonic() - start


async def wait_available(p: RateLimitPhase, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if p.redis is not None and p.redis.available:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_redis_killed_falls_back_to_local_and_comes_back(redis_server: RedisServer) -> None:
    p = phase(redis_server.url, "local", tenant_default="4/hour")
    await p.start()
    try:
        assert [await allowed(p, "acme") for _ in range(2)] == [True, True]
        redis_server.kill()
        results = [await timed(p, "acme") for _ in range(6)]
        # The local buckets start full: traffic keeps flowing under the local limit.
        assert [d is None for d, _ in results] == [True] * 4 + [False] * 2
        assert max(t for _, t in results) < TIMEOUT_MS / 1000 + SLACK_S
        assert p.redis is not None and not p.redis.available
        redis_server.start()
        assert await wait_available(p)
        # Redis again: its state outlived nothing (no persistence), so the budget is fresh.
        c = ctx("acme")
        assert await p(c) is None
        assert c.response_headers["ratelimit-remaining"] == "3"
        assert redis_server.command_calls().get("evalsha", 0) >= 1
    finally:
        await p.stop()


@pytest.mark.parametrize(("mode", "status"), [("allow", None), ("deny", 503)])
async def test_redis_killed_applies_the_failure_mode(redis_server: RedisServer, mode: str,
                                                    status: int | None) -> None:
    p = phase(redis_server.url, mode, tenant_default="1/hour")
    await p.start()
    try:
        assert await allowed(p, "acme")
        redis_server.kill()
        for _ in range(5):
            decision, elapsed = await timed(p, "acme")
            assert (decision.http_status if decision else None) == status
            assert elapsed < TIMEOUT_MS / 1000 + SLACK_S
    finally:
        await p.stop()


async def test_frozen_redis_costs_one_timeout_then_nothing(redis_server: RedisServer) -> None:
    p = phase(redis_server.url, "allow", tenant_default="100/min")
    await p.start()
    try:
        assert await allowed(p, "acme")
        redis_server.pause()  # accepts nothing, answers nothing: the worst case
        # More concurrent checks than pooled connections: all are cut off by the timeout.
        caught = await asyncio.gather(*(timed(p, "acme") for _ in range(40)))
        assert all(d is None for d, _ in caught)
        assert max(t for _, t in caught) < TIMEOUT_MS / 1000 + SLACK_S
        assert p.redis is not None and not p.redis.available
        sent = p.redis.checks_sent
        for _ in range(20):
            assert await allowed(p, "acme")
        assert p.redis.checks_sent == sent  # the circuit kept every later check off Redis
        redis_server.resume()
        # The cut-off checks gave their connections back: the probe and new checks get one.
        assert await wait_available(p)
        # Checks reach Redis again (one after the other: 40 at once could miss a 100 ms budget on a
        # loaded CI machine while the abandoned calls are still closing their connections).
        for _ in range(10):
            assert await allowed(p, "acme")
        assert p.redis.checks_sent == sent + 10
        assert p.redis.available
    finally:
        await p.stop()
