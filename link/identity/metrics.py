"""Prometheus metrics of the identity package (registered on ``link.metrics.REGISTRY``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from link.metrics import REGISTRY

REFUSALS = Counter(
    "stoa_link_identity_refusals_total",
    "Requests the identity phase refused, by reason.",
    ["reason"],
    registry=REGISTRY,
)
AUTHENTICATED = Counter(
    "stoa_link_identity_authenticated_total",
    "Requests the identity phase accepted, by credential kind.",
    ["kind"],
    registry=REGISTRY,
)
TOKEN_CACHE = Counter(
    "stoa_link_identity_token_cache_total",
    "Verified-token cache lookups, by result (hit, miss).",
    ["result"],
    registry=REGISTRY,
)
JWKS_FETCHES = Counter(
    "stoa_link_identity_jwks_fetches_total",
    "JWKS (and discovery) fetches per issuer, by result (ok, error).",
    ["issuer", "result"],
    registry=REGISTRY,
)
JWKS_REFRESH_SKIPPED = Counter(
    "stoa_link_identity_jwks_refresh_skipped_total",
    "Unknown-kid refreshes not attempted because the minimum interval had not passed.",
    ["issuer"],
    registry=REGISTRY,
)
JWKS_KEYS = Gauge(
    "stoa_link_identity_jwks_keys",
    "Signing keys currently usable per issuer (0 once stale keys expire).",
    ["issuer"],
    registry=REGISTRY,
)
API_KEYS = Gauge(
    "stoa_link_identity_api_keys",
    "API keys (hashes) currently loaded.",
    registry=REGISTRY,
)
API_KEY_RELOADS = Counter(
    "stoa_link_identity_api_key_reloads_total",
    "API key file reloads, by result (ok, error).",
    ["result"],
    registry=REGISTRY,
)
