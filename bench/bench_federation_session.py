"""What a per-call upstream session costs against one shared session (the federation's isolation price).

    python bench/bench_federation_session.py [--calls N]

Both are measured in the same run against the same SDK-built upstream on loopback: ``shared`` sends
every ``tools/call`` on one open session; ``per-call`` opens a session (initialize, initialized),
calls, and closes it (DELETE), as a call whose session was spoiled costs; ``leased`` takes a clean
session from :class:`mcp_server.callsessions.CallSessionPool`, as a federated call normally does.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_server.callsessions import CallSessionPool
from mcp_server.relay import CallRelay
from tests.harness.mcp_upstreams import sdk_upstream


def _client(url: str) -> Client:
    return Client(streamable_http_client(url, http_client=httpx2.AsyncClient()), mode="legacy", cache=None)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    n = parser.parse_args().calls
    async with sdk_upstream() as sdk:
        shared: list[float] = []
        async with _client(sdk.url) as c:
            await c.call_tool("echo", {"text": "warm"})
            for _ in range(n):
                t0 = time.perf_counter()
                await c.call_tool("echo", {"text": "x"})
                shared.append(time.perf_counter() - t0)
        per_call: list[float] = []
        for _ in range(n):
            t0 = time.perf_counter()
            async with _client(sdk.url) as c:
                await c.call_tool("echo", {"text": "x"})
            per_call.append(time.perf_counter() - t0)
        pool = CallSessionPool(lambda: streamable_http_client(sdk.url, http_client=httpx2.AsyncClient()), 10.0)
        pooled: list[float] = []
        for _ in range(n + 1):
            t0 = time.perf_counter()
            session = await pool.lease()
            await session.call("echo", {"text": "x"}, CallRelay(None))
            pool.give_back(session)
            pooled.append(time.perf_counter() - t0)
        pool.close()
    s50, p50 = statistics.median(shared) * 1e3, statistics.median(per_call) * 1e3
    l50 = statistics.median(pooled[1:]) * 1e3
    print(f"calls={n} shared p50={s50:.2f} ms | per-call session p50={p50:.2f} ms ({p50 / s50:.2f}x) | "
          f"leased clean session p50={l50:.2f} ms ({l50 / s50:.2f}x), sessions opened={pool.opened}")


if __name__ == "__main__":
    asyncio.run(main())
