"""The verified-token cache: a repeat call never re-verifies a signature.

Keyed by the SHA-256 of the token (so keys leak nothing if dumped), bounded
(least recently used entries go first), and each entry dies with its token.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from link.model import Principal

__all__ = ["VerifiedTokenCache", "token_key"]


def token_key(token: str) -> bytes:
    """The cache key of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class VerifiedTokenCache:
    """LRU of principals of verified tokens, each valid until its own expiry."""

    def __init__(self, max_entries: int, max_age_s: float = 300.0) -> None:
        self._max = max_entries
        self._max_age = max_age_s  # bounds tokens that carry no exp
        self._entries: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, now: float) -> Principal | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry[1]:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: bytes, principal: Principal, expires_at: float | None, now: float) -> None:
        if self._max <= 0:
            return
        limit = now + self._max_age
        self._entries[key] = (principal, limit if expires_at is None else min(expires_at, limit))
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
