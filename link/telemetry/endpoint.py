"""The one accepted form of an OTLP/gRPC collector endpoint, for Link's exporter and Envoy's tracer alike.

- ``HOST:PORT`` or ``http://HOST:PORT``: plain (insecure) gRPC;
- ``https://HOST:PORT``: gRPC over TLS (the host is the TLS server name);
- the port defaults to 4317; a path is refused (OTLP/gRPC has none).

The OpenTelemetry SDK on its own reads a bare ``HOST:PORT`` as TLS, and a
collector listening in plain text then silently receives nothing; spelling the
scheme out here makes both processes agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["FORMS", "OtlpEndpoint", "parse_otlp_endpoint"]

FORMS = "HOST:PORT or http://HOST:PORT (plain gRPC), https://HOST:PORT (TLS)"
DEFAULT_PORT = 4317


@dataclass(frozen=True, slots=True)
class OtlpEndpoint:
    """Where to send spans, and whether over TLS."""

    host: str
    port: int
    tls: bool

    @property
    def address(self) -> str:
        """``host:port`` (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The endpoint with its scheme spelled out, as the exporter is given it."""
        return f"{'https' if self.tls else 'http'}://{self.address}"

    def describe(self) -> str:
        return f"{self.url} ({'TLS' if self.tls else 'plain gRPC'})"


def parse_otlp_endpoint(value: str) -> OtlpEndpoint:
    """Parse one endpoint; ValueError names the accepted forms."""
    text = value.strip()
    scheme, sep, _ = text.partition("://")
    if not sep:
        scheme, text = "http", f"http://{text}"
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported scheme {scheme!r} in {value!r}; expected {FORMS}")
    try:
        parts = urlsplit(text)
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad port in {value!r}; expected {FORMS}") from None
    if not parts.hostname:
        raise ValueError(f"no host in {value!r}; expected {FORMS}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{value!r} has a path, query or credentials; OTLP/gRPC takes none; expected {FORMS}")
    return OtlpEndpoint(host=parts.hostname, port=port, tls=scheme == "https")
