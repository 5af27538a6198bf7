"""Fetching discovery and JWKS documents: async, bounded in time and size."""

from __future__ import annotations

import json

import httpx

from link.identity.jwks import FetchError

__all__ = ["HttpJsonFetcher"]

_MAX_DOCUMENT_BYTES = 512 * 1024


class HttpJsonFetcher:
    """GETs JSON documents with one shared ``httpx.AsyncClient``, created on first use.

    The client is made lazily so it belongs to the event loop that uses it.
    ``transport`` lets tests swap the network for an ``httpx.MockTransport``.
    """

    def __init__(self, timeout_s: float, transport: httpx.AsyncBaseTransport | None = None,
                 max_bytes: int = _MAX_DOCUMENT_BYTES) -> None:
        self._timeout = httpx.Timeout(timeout_s)
        self._transport = transport
        self._max_bytes = max_bytes
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                transport=self._transport,
                follow_redirects=False,
                headers={"accept": "application/json", "user-agent": "stoa-link"},
            )
        return self._client

    async def get_json(self, url: str) -> object:
        """The JSON document at ``url``; :class:`FetchError` for any failure."""
        try:
            async with self._http().stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise FetchError(f"{url} answered HTTP {resp.status_code}")
                body = bytearray()
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise FetchError(f"{url} sent more than {self._max_bytes} bytes")
        except httpx.HTTPError as exc:
            raise FetchError(f"{url}: {type(exc).__name__}") from None
        try:
            return json.loads(body)
        except ValueError:
            raise FetchError(f"{url} did not answer JSON") from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
