"""Envoy's ``HeaderMap`` as the project's header map (Envoy types stop here)."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2

from link.headers import fold_headers

__all__ = ["header_map"]


def header_map(headers: base_pb2.HeaderMap) -> dict[str, str]:
    """Lower-cased names, repeated fields joined; ``raw_value`` (bytes) wins over the legacy ``value``."""
    return fold_headers(
        (h.key, h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value) for h in headers.headers
    )
