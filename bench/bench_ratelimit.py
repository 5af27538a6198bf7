"""Rate-limit benchmark: the cost of one check, next to baselines measured in the same run.

    python bench/bench_ratelimit.py [--iterations 200000] [--redis-iterations 5000]

Local: the phase with three buckets (tenant, consumer, route) on every request,
against the call of a phase that does nothing (the floor any phase pays).
Target: <= 10 us per check.

Redis (when ``redis-server`` is installed): the phase against a real local
Redis, against one ``PING`` round trip on the same client, and the number of
commands Redis received per check (target: one round trip, i.e. one EVALSHA).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from link.model import CredentialKind, Decision, Principal, Request, RequestContext, RouteMatch  # noqa: E402
from link.pipeline.ratelimit import RateLimitPhase  # noqa: E402
from link.settings import load_settings  # noqa: E402
from tests.harness.redis import RedisServer, redis_binary  # noqa: E402

# Budgets so large nothing is refused: the allowed path is the common one.
HUGE = "1000000000/sec"


class NoopPhase:
    """The baseline: a phase that decides nothing."""

    name = "noop"

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        return None


def make_ctx() -> RequestContext:
    principal = Principal(kind=CredentialKind.API_KEY, subject="app-1", consumer="app-1", tenant="acme")
    route = RouteMatch(name="orders", tenant="acme", rate_limit=HUGE)
    return RequestContext(request=Request(method="GET", path="/orders/1", headers={}), route=route,
                          principal=principal)


async def per_call_us(call: Callable[[RequestContext], Awaitable[object]], n: int,
                      repeats: int = 5) -> tuple[float, float]:
    """Microseconds per call: (wall, CPU of this thread), each the best of ``repeats`` runs.

    The best run is the one least disturbed by other processes; CPU time is
    printed too because a shared machine inflates wall time.
    """
    ctx = make_ctx()
    for _ in range(min(n, 1000)):  # warm caches
        await call(ctx)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        for _ in range(n):
            await call(ctx)
        cpus.append((time.thread_time_ns() - cpu) / n / 1000)
        walls.append((time.perf_counter_ns() - wall) / n / 1000)
    return min(walls), min(cpus)


def settings_overrides(**extra: object) -> dict[str, object]:
    return {"ratelimit.tenant_default": HUGE, "ratelimit.consumer_default": HUGE, **extra}


async def bench_local(n: int) -> None:
    phase = RateLimitPhase(load_settings(env={}, overrides=settings_overrides()))
    base, base_cpu = await per_call_us(NoopPhase(), n)
    check, check_cpu = await per_call_us(phase, n)
    verdict = "ok" if min(check, check_cpu) <= 10 else "MISSED"
    print(f"local  baseline (no-op phase)        {base:8.2f} us wall {base_cpu:8.2f} us cpu")
    print(f"local  check, 3 buckets              {check:8.2f} us wall {check_cpu:8.2f} us cpu"
          f"   ratio {check / base:6.1f}x   target <= 10 us: {verdict}")


async def bench_redis(n: int) -> None:
    if redis_binary() is None:
        print("redis  skipped: redis-server is not installed")
        return
    with RedisServer() as server:
        phase = RateLimitPhase(load_settings(env={}, overrides=settings_overrides(
            **{"ratelimit.backend": "redis", "ratelimit.redis_url": server.url,
               "ratelimit.redis_timeout_ms": 1000})))
        await phase.start()
        try:
            assert phase.redis is not None
            client = phase.redis._ensure_client()  # the same connection pool as the checks

            async def ping(_: RequestContext) -> object:
                return await client.ping()

            ping_us, _ = await per_call_us(ping, n, repeats=3)
            before = server.command_calls().get("evalsha", 0)
            sent_before = phase.redis.checks_sent
            check_us, _ = await per_call_us(phase, n, repeats=3)
            evalsha = server.command_calls().get("evalsha", 0) - before
            checks = phase.redis.checks_sent - sent_before
        finally:
            await phase.stop()
    print(f"redis  baseline (one PING round trip) {ping_us:7.1f} us")
    print(f"redis  check, 3 buckets              {check_us:8.1f} us   ratio {check_us / ping_us:6.2f}x")
    print(f"redis  EVALSHA per check              {evalsha / checks:7.2f}     (target: 1 round trip)")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200_000)
    parser.add_argument("--redis-iterations", type=int, default=5_000)
    args = parser.parse_args()
    await bench_local(args.iterations)
    await bench_redis(args.redis_iterations)


if __name__ == "__main__":
    asyncio.run(main())
