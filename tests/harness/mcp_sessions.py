"""A raw Streamable HTTP session for resumption tests: every SSE event and its id stay visible.

(The SDK's client hides event ids and reconnects by itself; these tests need to choose what a
reconnecting client sends as ``Last-Event-ID``.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["ACCEPT", "VERSION", "Session", "Sse", "results"]

VERSION = "2025-11-25"
ACCEPT = "application/json, text/event-stream"


@dataclass
class Sse:
    """Events of one SSE response, parsed."""

    status: int
    events: list[dict[str, str]] = field(default_factory=list)
    body: str = ""

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(e["data"]) for e in self.events if e.get("data")]


async def _read_sse(response: httpx.Response, until_id: int | None = None) -> Sse:
    """The response's events, up to the end of the stream or (like a client) the answer to ``until_id``.

    A resumed stream stays open for what may follow, so a client stops reading at its answer.
    """
    out = Sse(response.status_code)
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        out.body = (await response.aread()).decode()
        return out
    event: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if event:
                out.events.append(event)
                if until_id is not None and _answers(event, until_id):
                    return out
            event = {}
            continue
        key, _, value = line.partition(":")
        event[key] = event.get(key, "") + value.removeprefix(" ")
    if event:
        out.events.append(event)
    return out


def _answers(event: dict[str, str], request_id: int) -> bool:
    if not event.get("data"):
        return False
    message = json.loads(event["data"])
    return isinstance(message, dict) and message.get("id") == request_id and "method" not in message


class Session:
    """A raw Streamable HTTP session (so the test sees every SSE event and id)."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.id = ""
        self._next = 1

    async def open(self) -> None:
        resp = await self.http.post(self.url, headers={"accept": ACCEPT}, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        assert resp.status_code == 200, resp.text
        self.id = resp.headers["mcp-session-id"]
        await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def headers(self, **extra: str) -> dict[str, str]:
        return {"accept": ACCEPT, "mcp-session-id": self.id, "mcp-protocol-version": VERSION, **extra}

    async def post(self, message: dict[str, Any]) -> Sse:
        async with self.http.stream("POST", self.url, json=message, headers=self.headers()) as resp:
            return await _read_sse(resp)

    async def call(self, name: str, arguments: dict[str, Any] | None = None,
                   meta: dict[str, Any] | None = None) -> tuple[int, Sse]:
        request_id = self._next
        self._next += 1
        params: dict[str, Any] = {"name": name, "arguments": arguments or {}}
        if meta is not None:
            params["_meta"] = meta
        sse = await self.post({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})
        return request_id, sse

    async def resume(self, last_event_id: str, until_id: int | None = None) -> Sse:
        headers = self.headers(**{"last-event-id": last_event_id})
        headers["accept"] = "text/event-stream"
        async with self.http.stream("GET", self.url, headers=headers) as resp:
            return await _read_sse(resp, until_id)


def results(sse: Sse, request_id: int) -> list[dict[str, Any]]:
    """The results answering ``request_id`` among the events of ``sse``."""
    return [m for m in sse.messages() if m.get("id") == request_id and "result" in m]
