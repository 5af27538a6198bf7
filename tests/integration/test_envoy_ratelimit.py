"""Rate limits end to end through the real Envoy binary: exact counts, shared Redis budget, Redis failures."""

from __future__ import annotations

import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from tests.harness.envoy import envoy_for
from tests.harness.procs import ManagedProcess, free_port, wait_for_port
from tests.harness.redis import RedisServer, redis_binary
from tests.harness.sidecar import Sidecar
from tests.harness.upstream import EchoUpstream

pytestmark = pytest.mark.integration
needs_redis = pytest.mark.skipif(redis_binary() is None, reason="redis-server is not installed")

# Anonymous routes with a fixed tenant: the tenant buckets apply without credentials.
ROUTES = [
    {"name": "acme-api", "prefix": "/acme", "anonymous": True, "tenant": "acme"},
    {"name": "globex-api", "prefix": "/globex", "anonymous": True, "tenant": "globex"},
]
# Slow refill (one token per 12 and 20 minutes): no token comes back during a test, so counts are exact.
TENANTS = "{acme: 5/hour, globex: 3/hour}"
EXPECTED = {"acme": 5, "globex": 3}


def hammer(base_url: str, per_tenant: int = 15) -> list[tuple[str, httpx.Response]]:
    """Both tenants at once, from several client threads."""
    jobs = [t for _ in range(per_tenant) for t in ("acme", "globex")]

    def one(tenant: str) -> tuple[str, httpx.Response]:
        return tenant, httpx.get(f"{base_url}/{tenant}/orders", timeout=10)

    with ThreadPoolExecutor(max_workers=6) as pool:
        return list(pool.map(one, jobs))


def allowed_per_tenant(results: list[tuple[str, httpx.Response]]) -> dict[str, int]:
    statuses = {r.status_code for _, r in results}
    assert statuses <= {200, 429}, statuses
    return dict(Counter(t for t, r in results if r.status_code == 200))


def test_exact_allow_counts_for_two_tenants_at_once(transport: str) -> None:
    with Sidecar({"ratelimit.tenants": TENANTS}, routes=ROUTES, transport=transport) as sc:
        results = hammer(sc.url)
        assert allowed_per_tenant(results) == EXPECTED
        assert len(sc.upstream.requests) == 8  # refusals never reached the upstream

        ok = [r for t, r in results if t == "acme" and r.status_code == 200]
        assert sorted(r.headers["ratelimit-remaining"] for r in ok) == ["0", "1", "2", "3", "4"]
        assert all(r.headers["ratelimit-limit"] == "5" for r in ok)
        refused = next(r for t, r in results if t == "globex" and r.status_code == 429)
        assert 1 <= int(refused.headers["retry-after"]) <= 1200
        assert refused.headers["ratelimit-remaining"] == "0"
        assert refused.headers["ratelimit-limit"] == "3"
        assert refused.json()["error"] == "too_many_requests"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def _serve(config: dict[str, object], workdir: Path, name: str) -> tuple[ManagedProcess, str, str, str]:
    """A separate ``stoa-link serve`` process: the process, its gRPC and HTTP decision addresses, its admin URL."""
    grpc_port, admin_port, http_port = free_port(), free_port(), free_port()
    cfg = dict(config)
    cfg["server"] = {"grpc_address": f"127.0.0.1:{grpc_port}", "admin_address": f"127.0.0.1:{admin_port}",
                     "http_address": f"127.0.0.1:{http_port}"}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = ManagedProcess([str(Path(sys.executable).parent / "stoa-link"), "serve", "--config", str(path)],
                          log_path=workdir / f"{name}.log", cwd=str(workdir))
    try:
        wait_for_port(grpc_port, timeout=30, proc=proc.proc)
        wait_for_port(http_port, timeout=30, proc=proc.proc)
        wait_for_port(admin_port, timeout=30, proc=proc.proc)
    except Exception:
        proc.stop()
        raise RuntimeError(f"{name} did not start:\n{proc.log_text()[-3000:]}") from None
    return proc, f"127.0.0.1:{grpc_port}", f"127.0.0.1:{http_port}", f"http://127.0.0.1:{admin_port}"


def _redis_checks(admin_url: str) -> float:
    text = httpx.get(f"{admin_url}/metrics", timeout=5).text
    pattern = r'^stoa_link_ratelimit_redis_checks_total\{result="(?:allowed|limited)"\} ([0-9.e+]+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


@needs_redis
def test_two_link_processes_share_one_redis_budget(redis_server: RedisServer) -> None:
    config: dict[str, object] = {
        "metering": {"enabled": False}, "snapshots": {"enabled": False}, "registry": {"source": "none"},
        "policy": {"enabled": False}, "routes": ROUTES, "mcp": {"port": 0},  # two processes: no fixed MCP port
        "ratelimit": {"backend": "redis", "redis_url": redis_server.url, "tenants": yaml.safe_load(TENANTS),
                      "redis_timeout_ms": 1000},  # a loaded machine must not fall back to local buckets here
    }
    with tempfile.TemporaryDirectory(prefix="stoa-rl-") as tmp:
        links = [_serve(config, Path(tmp), f"link{i}") for i in range(2)]
        try:
            with EchoUpstream() as up, envoy_for([grpc for _, grpc, _, _ in links], up.url,
                                                 link_http=tuple(http for _, _, http, _ in links)) as envoy:
                results = hammer(envoy.url)
                assert allowed_per_tenant(results) == EXPECTED
                assert len(up.requests) == 8
            # Both processes decided part of the traffic, each through Redis.
            assert all(_redis_checks(admin) > 0 for _, _, _, admin in links)
        finally:
            for proc, _, _, _ in links:
                proc.stop()


@needs_redis
@pytest.mark.parametrize("freeze", [True, False], ids=["redis-frozen", "redis-killed"])
def test_traffic_keeps_flowing_when_redis_goes_away(redis_server: RedisServer, freeze: bool) -> None:
    # Envoy gives Link 600 ms per check and answers 503 past that. Link's Redis timeout is
    # 100 ms; without it a frozen Redis would hold each check for the 1 s socket timeout.
    overrides = {
        "ratelimit.backend": "redis", "ratelimit.redis_url": redis_server.url,
        "ratelimit.redis_timeout_ms": 100, "ratelimit.redis_failure_mode": "local",
        "ratelimit.redis_retry_s": 30, "ratelimit.tenants": TENANTS,
    }
    with Sidecar(overrides, routes=ROUTES, envoy_options={"authz_timeout_ms": 600}) as sc:
        before = [sc.get("/acme/a").status_code for _ in range(2)]
        assert before == [200, 200]
        if freeze:
            redis_server.pause()
        else:
            redis_server.kill()
        results = hammer(sc.url, per_tenant=10)
        # No 503: no check outlived Envoy's timeout. The local buckets start full.
        assert allowed_per_tenant(results) == EXPECTED
        redis_server.resume()

