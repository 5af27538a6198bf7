"""What Envoy's OpenTelemetry tracer should put on its server span, for the bootstrap generator.

Envoy's span is the request's server span when Envoy traces. Its built-in tags
follow older conventions (``http.method``, ``http.status_code``); these custom
tags add the current semantic-convention names and Link's ``stoa.*`` attributes,
read from the request and from the dynamic metadata Link's ext_authz answer set.
Tags whose value is missing are left out by Envoy. Plain data, so the generator
keeps its own typed config objects.
"""

from __future__ import annotations

from link.decision_metadata import link_key
from link.settings import TracingSettings

__all__ = ["ENVOY_SPAN_OPERATION", "ENVOY_SPAN_TAGS", "envoy_random_sampling_percent"]

_META = "envoy.filters.http.ext_authz"


def _meta(key: str) -> str:
    # Link's fields carry their own prefix in the shared namespace (link.decision_metadata).
    return f"%DYNAMIC_METADATA({_META}:{link_key(key)})%"


# HttpConnectionManager.Tracing.operation: the server span's name, "{method} {route}".
ENVOY_SPAN_OPERATION = f"%REQ(:METHOD)% {_meta('route_template')}"

# HttpConnectionManager.Tracing.custom_tags: (tag, substitution-format value) pairs -> CustomTag(tag, value).
ENVOY_SPAN_TAGS: tuple[tuple[str, str], ...] = (
    ("http.request.method", "%REQ(:METHOD)%"),
    ("url.path", "%PATH(NQ)%"),
    ("url.scheme", "%REQ(:SCHEME)%"),
    ("http.response.status_code", "%RESPONSE_CODE%"),
    ("http.route", _meta("route_template")),
    ("user_agent.original", "%REQ(USER-AGENT)%"),
    ("client.address", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
    ("stoa.tenant", _meta("tenant")),
    ("stoa.consumer", _meta("consumer")),
    ("stoa.tool", _meta("tool")),
    ("stoa.decision", _meta("decision")),
    ("stoa.outcome", _meta("outcome")),
    ("stoa.reason", _meta("reason")),
    ("stoa.route", _meta("route")),
    ("stoa.decision_id", _meta("decision_id")),
)


def envoy_random_sampling_percent(settings: TracingSettings) -> float:
    """HttpConnectionManager.Tracing.random_sampling (percent) matching Link's sample ratio."""
    return round(settings.sample_ratio * 100.0, 4)
