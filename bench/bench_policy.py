"""Policy benchmark: the policy phase on an RBAC policy, next to baselines measured in the same run.

    python bench/bench_policy.py [--iterations 5000]

Policy: examples/policies/demo.rego (RBAC by role, method and path). Input: a
typical request (GET /invoices/{id}, a dozen headers, a JWT principal with
roles); the invoice id changes on every request.

Rows (p50 / p90 per request, microseconds):
  naive query      regopy ``Interpreter.query`` with the full OPA-Envoy input (the obvious way)
  phase, no cache  the phase with the decision cache off: pruned input + prepared bundle
  phase, cached    the phase as configured by default (decision cache on)
  noop phase       a phase that decides nothing (the floor any phase pays)
Target: phase <= 100 us p50.
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

from regopy import Interpreter, LogLevel  # noqa: E402

from link.model import CredentialKind, Decision, Principal, Request, RequestContext  # noqa: E402
from link.pipeline.policy import PolicyPhase  # noqa: E402
from link.policy.inputdoc import build_input  # noqa: E402
from link.settings import load_settings  # noqa: E402

POLICY = ROOT / "examples" / "policies" / "demo.rego"


def _ctx(i: int) -> RequestContext:
    headers = {
        "host": "api.acme.local", "user-agent": "bench/1.0", "accept": "application/json",
        "accept-encoding": "gzip", "x-forwarded-for": "10.0.0.7", "x-forwarded-proto": "https",
        "x-request-id": f"req-{i}", "authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig",
        "traceparent": f"00-{i:032x}-{i:016x}-01", "content-type": "application/json",
        "x-client-version": "4.2.0", "cookie": "sid=abc",
    }
    request = Request(method="GET", path=f"/invoices/{1000 + i}", headers=headers, host="api.acme.local",
                      source_address="10.0.0.7", source_port=51000, destination_address="10.0.0.1",
                      destination_port=8080)
    request.ensure_request_id()
    principal = Principal(kind=CredentialKind.JWT, subject="alice", consumer="app-1", tenant="acme",
                          scopes=frozenset({"invoices:read"}), roles=frozenset({"reader"}))
    return RequestContext(request=request, principal=principal)


class NoopPhase:
    name = "noop"

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        return None


def _percentiles(samples: list[int]) -> tuple[float, float]:
    samples.sort()
    return samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.9)] / 1000


async def _measure(call: Callable[[RequestContext], Awaitable[object]], n: int) -> tuple[float, float]:
    ctxs = [_ctx(i) for i in range(n)]
    for ctx in ctxs[:200]:  # warm-up
        await call(ctx)
    samples = []
    for ctx in ctxs:
        start = time.perf_counter_ns()
        await call(ctx)
        samples.append(time.perf_counter_ns() - start)
    return _percentiles(samples)


async def main(iterations: int) -> None:
    settings = load_settings(env={}, overrides={"policy.paths": [str(POLICY)]})
    cached = PolicyPhase(settings.policy)
    uncached = PolicyPhase(settings.policy.model_copy(update={"cache_size": 0}))
    assert cached.policy is not None and uncached.policy is not None
    assert await cached(_ctx(0)) is None, "the bench request must be allowed"

    naive = Interpreter()
    naive.log_level = LogLevel.NONE
    naive.add_module("demo.rego", POLICY.read_text())

    async def naive_query(ctx: RequestContext) -> object:
        naive.set_input(build_input(ctx))
        return naive.query(settings.policy.query)

    rows = [
        ("naive query", await _measure(naive_query, max(500, iterations // 10))),
        ("phase, no cache", await _measure(uncached, iterations)),
        ("phase, cached", await _measure(cached, iterations)),
        ("noop phase", await _measure(NoopPhase(), iterations)),
    ]
    base = rows[0][1][0]
    print(f"policy: {POLICY.name}; input reduced to {cached.policy.needs}")
    print(f"{'':18}{'p50 us':>10}{'p90 us':>10}{'vs naive':>10}")
    for name, (p50, p90) in rows:
        print(f"{name:18}{p50:10.1f}{p90:10.1f}{base / p50:9.1f}x")
    verdict = "meets" if rows[2][1][0] <= 100 else "misses"
    print(f"target phase p50 <= 100 us: {verdict} (cached {rows[2][1][0]:.1f} us, "
          f"uncached {rows[1][1][0]:.1f} us); noop floor {rows[3][1][0]:.1f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=5000)
    asyncio.run(main(parser.parse_args().iterations))
