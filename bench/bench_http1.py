"""Client CPU per request: the lean HTTP/1.1 pool against aiohttp and httpx, in the same run.

A keep-alive upstream runs in a child process (so its CPU is not counted); the
bench process sends the same small GET with each client in turn, one request at
a time and then ``--concurrency`` at once, and reads its own CPU time
(``time.process_time``) around each batch. Rounds interleave the clients so a
busy machine's drift spreads over all of them; the figures are medians over
rounds and the ratio is to ``Http1Pool`` in the same round.

    python bench/bench_http1.py [--requests 3000] [--rounds 5] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

_ANSWER = b'{"ok":true,"items":[1,2,3]}'
_RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
             + str(len(_ANSWER)).encode() + b"\r\n\r\n" + _ANSWER)


class _Upstream(asyncio.Protocol):
    """Answers every request head with the same small JSON, keeping the connection."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.transport.write(_RESPONSE)


def serve(port: int) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Upstream, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Send = Callable[[], Awaitable[int]]


async def _clients(url: str) -> tuple[dict[str, Send], Callable[[], Awaitable[None]]]:
    import aiohttp
    import httpx

    from mcp_server.http1 import Http1Pool

    pool = Http1Pool()
    session = aiohttp.ClientSession()
    client = httpx.AsyncClient()
    headers = {"user-agent": "bench", "accept": "application/json"}

    async def lean() -> int:
        return len((await pool.exchange("GET", url, headers, b"")).body)

    async def with_aiohttp() -> int:
        async with session.get(url, headers=headers) as resp:
            return len(await resp.read())

    async def with_httpx() -> int:
        return len((await client.get(url, headers=headers)).content)

    async def close() -> None:
        pool.close()
        await session.close()
        await client.aclose()

    return {"Http1Pool": lean, "aiohttp": with_aiohttp, "httpx": with_httpx}, close


async def _batch(send: Send, requests: int, concurrency: int) -> float:
    """Client CPU per request (µs) for ``requests`` requests, ``concurrency`` in flight."""

    async def worker(n: int) -> None:
        for _ in range(n):
            assert await send() == len(_ANSWER)

    for _ in range(50):  # warm: connections open, code paths hot
        await send()
    start = time.process_time()
    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    return (time.process_time() - start) / (requests // concurrency * concurrency) * 1e6


async def run(args: argparse.Namespace, url: str) -> None:
    clients, close = await _clients(url)
    shapes = [1, args.concurrency]
    figures: dict[tuple[str, int], list[float]] = {(name, c): [] for name in clients for c in shapes}
    ratios: dict[tuple[str, int], list[float]] = {key: [] for key in figures}
    try:
        for _ in range(args.rounds):
            for c in shapes:
                this_round = {name: await _batch(send, args.requests, c) for name, send in clients.items()}
                for name, us in this_round.items():
                    figures[(name, c)].append(us)
                    ratios[(name, c)].append(us / this_round["Http1Pool"])
    finally:
        await close()
    print(f"client CPU per request, median of {args.rounds} rounds ({args.requests} requests each)")
    print(f"{'client':<10} {'in flight':>9} {'µs/request':>11} {'spread':>15} {'x Http1Pool':>12}")
    for (name, c), values in figures.items():
        spread = f"{min(values):.0f}-{max(values):.0f}"
        print(f"{name:<10} {c:>9} {statistics.median(values):>11.1f} {spread:>15} "
              f"{statistics.median(ratios[(name, c)]):>12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    port = _free_port()
    upstream = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        import uvloop

        uvloop.run(run(args, f"http://127.0.0.1:{port}/v1/items?page=1"))
    finally:
        upstream.terminate()
        upstream.wait(timeout=5)


if __name__ == "__main__":
    main()
