"""The floor for a Python HTTP ext_authz: an asyncio Protocol + httptools + uvloop server answering 200.

    python bench/noop_http_authz.py 127.0.0.1:PORT

It parses each request's headers (as a real decision service must) and answers
with three headers (what Link sends upstream and to the access log) on a
keep-alive connection; no decision is taken. Used by bench_dataplane.py as the
`noop-http` floor, next to the `noop-grpc` one (bench/noop_authz.py).
"""

from __future__ import annotations

import asyncio
import sys

import httptools

_OK = (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-stoa-tenant: bench\r\nx-stoa-consumer: noop\r\n"
       b"x-stoa-decision-id: 00000000000000000000000000000000\r\n\r\n")


class _Check(asyncio.Protocol):
    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._headers: dict[bytes, bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_message_complete(self) -> None:
        self._headers = {}
        if self._transport is not None:
            self._transport.write(_OK)


async def main(address: str) -> None:
    host, _, port = address.rpartition(":")
    server = await asyncio.get_running_loop().create_server(_Check, host, int(port), backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1]))
