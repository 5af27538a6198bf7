"""Fast ``tools/list`` answers: each tool is checked against the protocol's schema once, not per list.

The SDK validates every spec-method result against the negotiated protocol
version's schema and dumps it again (pydantic, about 20 µs per tool): with
10,000 tools that is a quarter of a second per ``tools/list``. Our tool
descriptions are fixed per registry version, so each is passed through the
SDK's own serializer once per protocol version (:func:`sieve_tool`) and the
list handler returns them in a :class:`SievedTools` list. The SDK's
serializer is wrapped so that such a list skips re-validation; anything else
(any other method, any other result) takes the SDK's own path unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mcp_types import methods as _methods

__all__ = ["FAST_VERSIONS", "SievedTools", "install", "sieve_tool", "sieve_tools"]

# Versions whose Tool shape our descriptions fit exactly; older ones take the SDK's path.
FAST_VERSIONS = frozenset({"2025-06-18", "2025-11-25", "2026-07-28"})

_original = _methods.serialize_server_result


class SievedTools(list[dict[str, Any]]):
    """Tool descriptions already passed through the SDK serializer for ``version``."""

    def __init__(self, version: str, tools: Iterable[dict[str, Any]]) -> None:
        super().__init__(tools)
        self.version = version


def sieve_tool(wire: Mapping[str, Any], version: str) -> dict[str, Any]:
    """One tool description exactly as the SDK would put it in a ``tools/list`` result."""
    return sieve_tools([wire], version)[0]


def sieve_tools(wires: list[Mapping[str, Any]], version: str) -> list[dict[str, Any]]:
    """Many descriptions shaped by one SDK call (the schema check is the slow part, not the count)."""
    shaped = _original("tools/list", version, _shell(version, [dict(w) for w in wires]))
    tools: list[dict[str, Any]] = shaped["tools"]
    return tools


def _shell(version: str, tools: list[dict[str, Any]]) -> dict[str, Any]:
    if version in ("2026-07-28",):
        return {"tools": tools, "resultType": "complete", "ttlMs": 0, "cacheScope": "private"}
    return {"tools": tools}


def _serialize_server_result(method: str, version: str, data: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    tools = data.get("tools") if method == "tools/list" else None
    if isinstance(tools, SievedTools) and tools.version == version and not kwargs:
        shaped = _original(method, version, {**data, "tools": []})
        shaped["tools"] = list(tools)
        return shaped
    return _original(method, version, data, **kwargs)


def install() -> None:
    """Wrap the SDK's result serializer (idempotent)."""
    if _methods.serialize_server_result is not _serialize_server_result:
        _methods.serialize_server_result = _serialize_server_result
