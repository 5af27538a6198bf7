"""The rate-limit phase: decisions, headers, and Redis failure modes without Redis."""

from __future__ import annotations

from typing import Any

from link.model import ANONYMOUS, Outcome, Request, RequestContext, RouteMatch
from link.pipeline.base import Pipeline
from link.pipeline.ratelimit import RateLimitPhase, build_ratelimit_phase
from link.pipeline.response import ResponsePhase
from link.routes import RouteTable
from link.settings import Settings, load_settings
from tests.harness.procs import free_port


def settings(**ratelimit: Any) -> Settings:
    return load_settings(env={}, overrides={f"ratelimit.{k}": v for k, v in ratelimit.items()})


def ctx(tenant: str = "acme", route_limit: str | None = None) -> RequestContext:
    route = RouteMatch(name="pub", tenant=tenant, anonymous=True, rate_limit=route_limit)
    return RequestContext(request=Request(method="GET", path="/pub", headers={}), route=route,
                          principal=ANONYMOUS)


async def test_allowed_requests_carry_the_remaining_budget() -> None:
    phase = build_ratelimit_phase(settings(tenant_default="3/min"))
    seen = []
    for _ in range(3):
        c = ctx()
        assert await phase(c) is None
        seen.append(c.response_headers["ratelimit-remaining"])
    assert seen == ["2", "1", "0"]
    assert c.response_headers["ratelimit-limit"] == "3"
    assert c.response_headers["ratelimit-policy"] == "3;w=60"
    assert c.response_headers["ratelimit-reset"] == "60"


async def test_a_refusal_is_429_with_retry_after() -> None:
    phase = build_ratelimit_phase(settings(tenant_default="2/min"))
    await phase(ctx())
    await phase(ctx())
    c = ctx()
    decision = await phase(c)
    assert decision is not None and not decision.allowed
    assert decision.http_status == 429
    assert (decision.outcome, decision.reason) == (Outcome.RATE_LIMITED, "rate_limited")
    h = decision.response_headers
    assert (h["retry-after"], h["ratelimit-remaining"], h["ratelimit-limit"]) == ("30", "0", "2")
    assert c.record.ratelimit_scope == "tenant"


async def test_unlimited_requests_pass_without_headers() -> None:
    phase = build_ratelimit_phase(settings())
    c = ctx()
    assert await phase(c) is None
    assert c.response_headers == {}


async def test_through_the_pipeline_headers_reach_both_answers() -> None:
    s = load_settings(env={}, overrides={
        "ratelimit.tenants": "{acme: 1/hour}",
        "routes": [{"name": "pub", "prefix": "/pub", "tenant": "acme", "anonymous": True}],
    })
    pipeline = Pipeline(RouteTable(s.routes), [RateLimitPhase(s)], ResponsePhase(s.identity))
    first = await pipeline.decide(Request(method="GET", path="/pub/a", headers={}))
    second = await pipeline.decide(Request(method="GET", path="/pub/a", headers={}))
    assert first.allowed and first.response_headers["ratelimit-remaining"] == "0"
    assert not second.allowed and second.http_status == 429
    assert second.response_headers["retry-after"] == "3600"
    assert second.body is not None and b"rate limit exceeded" in second.body


def redis_down(mode: str) -> Settings:
    # Nothing listens on this port: every connection is refused at once.
    return settings(backend="redis", redis_url=f"redis://127.0.0.1:{free_port()}/0",
                    redis_failure_mode=mode, tenant_default="2/hour", redis_retry_s="30")


async def test_redis_down_falls_back_to_local_buckets() -> None:
    phase = build_ratelimit_phase(redis_down("local"))
    await phase.start()
    try:
        results = [await phase(ctx()) for _ in range(3)]
        assert [d is None for d in results] == [True, True, False]
        assert results[2] is not None and results[2].http_status == 429
        ok, detail = phase.readiness()
        assert ok and "unavailable" in detail
    finally:
        await phase.stop()


async def test_redis_down_allow_lets_everything_through_without_headers() -> None:
    phase = build_ratelimit_phase(redis_down("allow"))
    await phase.start()
    try:
        contexts = [ctx() for _ in range(5)]
        assert [await phase(c) for c in contexts] == [None] * 5
        assert all(c.response_headers == {} for c in contexts)
        assert contexts[0].record.ratelimit_backend == "unavailable"
    finally:
        await phase.stop()


async def test_redis_down_deny_refuses_with_503() -> None:
    phase = build_ratelimit_phase(redis_down("deny"))
    await phase.start()
    try:
        decision = await phase(ctx())
        assert decision is not None
        assert (decision.http_status, decision.reason) == (503, "ratelimit_unavailable")
    finally:
        await phase.stop()


async def test_open_circuit_skips_redis_entirely() -> None:
    # Not started: the first check finds Redis away and opens the circuit.
    phase = build_ratelimit_phase(redis_down("local"))
    try:
        await phase(ctx())
        assert phase.redis is not None
        sent = phase.redis.checks_sent
        assert sent == 1 and not phase.redis.available
        for _ in range(10):
            await phase(ctx())
        assert phase.redis.checks_sent == sent
    finally:
        await phase.stop()
