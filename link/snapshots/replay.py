"""A curl command that replays a captured request, built only from sanitised parts."""

from __future__ import annotations

import shlex
from collections.abc import Mapping

__all__ = ["replay_command"]

# Headers curl sets itself, hop-by-hop headers, and ones Envoy or Link add on the way.
_SKIP = frozenset(
    {
        "host", "content-length", "connection", "keep-alive", "transfer-encoding", "te", "upgrade",
        "accept-encoding", "x-forwarded-for", "x-forwarded-proto", "x-envoy-expected-rq-timeout-ms",
        "x-envoy-internal", "x-envoy-original-path", "x-request-id", "traceparent", "tracestate",
    }
)


def replay_command(
    method: str,
    url_path: str,
    headers: Mapping[str, str],
    body: str,
    *,
    body_truncated: bool = False,
    strip_prefix: str = "x-stoa-",
) -> str:
    """``curl -X POST 'http://host/path' -H '…' --data-raw '…'``.

    ``headers`` and ``body`` must already be sanitised: secret headers are kept
    by name with their ``[REDACTED]`` value so whoever replays knows what to
    supply. Pseudo-headers give the scheme and authority when the capture kept them.
    """
    scheme = headers.get(":scheme") or headers.get("x-forwarded-proto") or "http"
    authority = headers.get(":authority") or headers.get("host") or "localhost"
    parts = ["curl", "-sS", "-X", method.upper() or "GET", shlex.quote(f"{scheme}://{authority}{url_path}")]
    for name, value in headers.items():
        lname = name.lower()
        if lname.startswith(":") or lname in _SKIP or lname.startswith("x-envoy-"):
            continue
        # Identity headers are Link's own output and would be stripped again on replay.
        if strip_prefix and lname.startswith(strip_prefix):
            continue
        parts += ["-H", shlex.quote(f"{lname}: {value}")]
    if body:
        parts += ["--data-raw", shlex.quote(body)]
    command = " ".join(parts)
    if body_truncated:
        command += "  # body excerpt only: the original body was longer"
    return command
