"""A remote OPA as the policy engine: ``POST {remote_url}`` with ``{"input": …}`` (OPA's Data API)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from link.policy.engine import UNDEFINED, EvalError

__all__ = ["RemoteEngine"]


class RemoteEngine:
    """Asks an OPA server; every failure (timeout, refused, non-200, bad JSON) is an :class:`EvalError`."""

    def __init__(self, url: str, timeout_ms: int) -> None:
        self.url = url
        self.revision = "remote"
        self._timeout = httpx.Timeout(timeout_ms / 1000.0)
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            # Keep-alive connections: the policy call is on the request path.
            self._client = httpx.AsyncClient(timeout=self._timeout,
                                             limits=httpx.Limits(max_keepalive_connections=32))

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def evaluate(self, doc: Mapping[str, Any]) -> Any:
        """The decision at ``url`` for ``doc``, or UNDEFINED when OPA answers without a result."""
        if self._client is None:
            await self.start()
        assert self._client is not None
        try:
            resp = await self._client.post(self.url, content=json.dumps({"input": doc}, default=str),
                                           headers={"content-type": "application/json"})
        except httpx.TimeoutException:
            raise EvalError(f"remote OPA timed out after {self._timeout.read}s") from None
        except httpx.HTTPError as exc:
            raise EvalError(f"remote OPA unreachable: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise EvalError(f"remote OPA answered {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            raise EvalError("remote OPA answered invalid JSON") from None
        if not isinstance(body, dict):
            raise EvalError("remote OPA answered something other than an object")
        return body.get("result", UNDEFINED)
