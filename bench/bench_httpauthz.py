# ruff: noqa: E402
"""The HTTP ext_authz server's own cost per check: Link's protocol over a real socket, no pipeline.

    python bench/bench_httpauthz.py [--checks 20000] [--baseline REF [--rounds 5]]

One event loop (uvloop) holds Link's ``CheckProtocol`` server on a Unix socket and a
client that sends Envoy's check (the headers ``http_service`` sends) on ``--connections``
keep-alive connections, each sending its next check when the answer arrives. The decision
callback returns a fixed answer at once, so what is measured is the transport alone:
parsing, the per-check task, the timers, the write. Rows, Python CPU µs per check (process
time of client and server together, best of 7):

  floor      the same client against a bare ``asyncio.Protocol`` + ``httptools`` answering the same bytes
  link       Link's ``CheckProtocol`` (link.httpauthz.protocol)

With ``--baseline REF`` each round runs in a fresh interpreter for git revision ``REF`` and for
this checkout, alternately, and prints the best of the rounds and this / baseline per row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, os.environ.get("STOA_BENCH_TREE", str(ROOT)))  # --baseline: the other revision's code

import httptools
from revisions import best_of_interleaved

from link.httpauthz.protocol import Check, Limits, ServerState, protocol_factory

_ANSWER = (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-stoa-tenant: bench\r\nx-stoa-consumer: bench-app\r\n"
           b"stoa.decision_id: 0123456789abcdef0123456789abcdef\r\n\r\n")
_CHECK = (b"GET /check/api/item HTTP/1.1\r\nhost: 127.0.0.1:10000\r\nuser-agent: wrk\r\naccept: */*\r\n"
          b"x-api-key: bench-key-0001\r\nx-forwarded-proto: http\r\n"
          b"x-request-id: 6f1c1c34-7d4e-4a4e-9f0e-0b8f3c0a9d11\r\nx-envoy-expected-rq-timeout-ms: 1000\r\n"
          b"stoa-envoy-source: 127.0.0.1:51234\r\nstoa-envoy-destination: 127.0.0.1:10000\r\n"
          b"stoa-envoy-scheme: http\r\nstoa-envoy-protocol: HTTP/1.1\r\ncontent-length: 0\r\n\r\n")


class _Floor(asyncio.Protocol):
    """The least a Python HTTP/1.1 check server does: parse, answer."""

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self._transport is not None:
            self._transport.write(_ANSWER)


class _Client(asyncio.Protocol):
    """Sends a check, waits for the whole answer, sends the next, until ``left`` is spent."""

    def __init__(self, left: list[int], done: asyncio.Future[None]) -> None:
        self._left = left
        self._done = done
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        if self._left[0] <= 0:
            if not self._done.done():
                self._done.set_result(None)
            return
        self._left[0] -= 1
        assert self._transport is not None
        self._transport.write(_CHECK)

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_message_complete(self) -> None:
        self._send()


async def _run(factory: object, checks: int, connections: int, path: str) -> float:
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(factory, path)  # type: ignore[arg-type]
    try:
        best = float("inf")
        for _ in range(7):
            left = [checks]
            done: asyncio.Future[None] = loop.create_future()
            clients = [await loop.create_unix_connection(lambda left=left, done=done: _Client(left, done), path)
                       for _ in range(connections)]
            t = time.process_time()
            await done
            best = min(best, (time.process_time() - t) / checks * 1e6)
            for transport, _ in clients:
                transport.close()
            await asyncio.sleep(0.05)
        return best
    finally:
        server.close()
        await server.wait_closed()


async def measure(checks: int, connections: int) -> list[tuple[str, float]]:
    async def decide(check: Check) -> bytes:
        return _ANSWER

    with tempfile.TemporaryDirectory() as tmp:
        floor = await _run(_Floor, checks, connections, f"{tmp}/floor.sock")
        state = ServerState(decide, Limits(), max_connections=1024)
        link = await _run(protocol_factory(state), checks, connections, f"{tmp}/link.sock")
    return [("floor", floor), ("link", link)]


def _round(tree: Path, args: argparse.Namespace) -> list[tuple[str, float]]:
    env = {**os.environ, "STOA_BENCH_TREE": str(tree)}
    out = subprocess.run([sys.executable, __file__, "--checks", str(args.checks), "--connections",
                          str(args.connections), "--json"], capture_output=True, text=True, check=True, env=env)
    return [(name, us) for name, us in json.loads(out.stdout.splitlines()[-1])]


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--checks", type=int, default=20_000)
    ap.add_argument("--connections", type=int, default=1, help="keep-alive connections, one check in flight each")
    ap.add_argument("--baseline", metavar="REF", help="git revision to compare with, round by round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import uvloop

    if args.json:
        print(json.dumps(uvloop.run(measure(args.checks, args.connections))))
        return 0
    if not args.baseline:
        rows = uvloop.run(measure(args.checks, args.connections))
        floor = rows[0][1]
        print(f"HTTP check server, {args.checks:,} checks on {args.connections} connection(s) "
              "(client + server CPU µs per check, best of 7)")
        for name, us in rows:
            print(f"  {name:<8} {us:8.2f} µs   {us / floor:5.2f}x the floor")
        return 0
    names, best = best_of_interleaved(args.baseline, args.rounds, lambda tree: _round(tree, args))
    print(f"HTTP check server, client + server CPU µs per check, {args.connections} connection(s) "
          f"(best of {args.rounds} interleaved rounds; baseline {args.baseline})")
    print(f"  {'':<8} {'baseline':>9} {'this':>9} {'this/base':>9}")
    for i, name in enumerate(names):
        print(f"  {name:<8} {best['baseline'][i]:9.2f} {best['this'][i]:9.2f} "
              f"{best['this'][i] / best['baseline'][i]:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
