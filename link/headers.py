"""One way to turn received header fields into the project's header map.

Every adapter that reads headers (ext_proc messages, Envoy tap traces, the MCP
server's ASGI scope) folds them here: names lower-cased, a field received more
than once becomes one value joined with ``,`` (RFC 9110 section 5.3), so the
pipeline sees the same map whichever way the request came in.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["fold_headers"]


def fold_headers(fields: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``(name, value)`` pairs as one map: lower-cased names, repeated fields joined with ``,``."""
    out: dict[str, str] = {}
    for name, value in fields:
        key = name.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out
