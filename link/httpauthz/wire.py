"""What Envoy's HTTP ext_authz and Link's HTTP decision server agree on (the generator uses it too).

Envoy's ``http_service`` sends the checked request's method and headers to
``path_prefix`` + the original path; Link answers 200 (allow) or a denial.
HTTP ext_authz carries less than gRPC's ``CheckResponse``, so Link encodes the
rest in headers whose names Envoy's config matches:

- decision metadata: one header per key, filed by
  ``authorization_response.dynamic_metadata_from_headers`` (flat strings) under
  the ext_authz namespace. Link's own keys travel by their own name
  (``stoa.tenant``, ``decision_id``: :mod:`link.decision_metadata`), so Envoy holds
  the same keys as on gRPC; the policy's own keys travel as ``stoa-meta-<key>``;
- headers to strip upstream: ``x-envoy-auth-headers-to-remove`` (comma list);
- what only Envoy knows (peer address, TLS peer, scheme): request headers added
  by ``authorization_request.headers_to_add``, under ``stoa-envoy-``, a prefix no
  client header can reach Link under (it is not in ``allowed_headers``).

Any 5xx from an HTTP authorization service is, to Envoy, a failure of the
service (``status_on_error``; let through with ``failure_mode_allow``). Link's
own 5xx refusals therefore travel as a reserved 49x status that the HTTP
connection manager's ``local_reply_config`` turns back into the 5xx.
"""

from __future__ import annotations

from typing import Any

# Envoy prepends this to the checked request's path; anything else on the server is not a check.
CHECK_PREFIX = "/check"
HEALTH_PATH = "/healthz"

# The metadata namespace Envoy files ext_authz metadata under (both transports).
METADATA_NAMESPACE = "envoy.filters.http.ext_authz"
META_PREFIX = "stoa-meta-"
REMOVE_HEADER = "x-envoy-auth-headers-to-remove"

# Request headers Envoy adds to every check (command operators are evaluated by Envoy).
ENVOY_PREFIX = "stoa-envoy-"
ENVOY_HEADERS: tuple[tuple[str, str], ...] = (
    (ENVOY_PREFIX + "source", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    (ENVOY_PREFIX + "destination", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    (ENVOY_PREFIX + "scheme", "%REQ(:SCHEME)%"),
    (ENVOY_PREFIX + "protocol", "%PROTOCOL%"),
    (ENVOY_PREFIX + "peer-uri-san", "%DOWNSTREAM_PEER_URI_SAN%"),
    (ENVOY_PREFIX + "peer-dns-san", "%DOWNSTREAM_PEER_DNS_SAN%"),
    (ENVOY_PREFIX + "peer-subject", "%DOWNSTREAM_PEER_SUBJECT%"),
    (ENVOY_PREFIX + "peer-cert", "%DOWNSTREAM_PEER_CERT%"),
)

# Added when Envoy traces: the check's traceparent is then Envoy's ext_authz span, not the client's.
ENVOY_TRACED = ENVOY_PREFIX + "traced"

# Refusals Envoy would misread travel as reserved, unassigned statuses that Envoy's local-reply
# mappers turn back (they touch only ext_authz's local replies, never an upstream's response):
# a 5xx S (500..509) as S - 10 (490..499), since any 5xx means "Link failed"; a refusal with
# status 200 (a policy may answer one) as 489, since 200 means "allowed".
RESERVED_OFFSET = 10
RESERVED_OK = 489
RESERVED_STATUSES = range(489, 500)


def wire_status(status: int) -> int:
    """The status Link's HTTP server answers for a refusal's HTTP status (an allow is always 200)."""
    if status == 200:
        return RESERVED_OK
    if 500 <= status <= 509:
        return status - RESERVED_OFFSET
    if status >= 510:
        return 500 - RESERVED_OFFSET
    return status


def client_status(wire: int) -> int:
    """The status the client sees for a wire status (what Envoy's local-reply mappers do)."""
    if wire == RESERVED_OK:
        return 200
    return wire + RESERVED_OFFSET if wire in RESERVED_STATUSES else wire


# Response headers that are Link's messages to Envoy, never headers for the client.
INTERNAL_HEADER_PREFIXES = (":", "stoa", "decision_id", "content-length")


def not_prefixed_regex(prefixes: tuple[str, ...]) -> str:
    """An RE2 pattern (no lookahead in RE2) matching every lower-case name that starts with none of ``prefixes``."""
    trie: dict[str, Any] = {}
    for p in prefixes:
        node = trie
        for ch in p:
            node = node.setdefault(ch, {})
        node["$"] = {}

    def alt(node: dict[str, Any]) -> str:
        if "$" in node:
            return ""  # a full prefix: nothing below it matches
        chars = sorted(k for k in node if k != "$")
        parts = [""]  # the name may end here (it is shorter than every prefix below)
        parts.append(f"[^{''.join(_escape(c) for c in chars)}].*")
        for c in chars:
            below = alt(node[c])
            if below:
                parts.append(_escape(c) + below)
        return "(?:" + "|".join(parts) + ")"

    return alt(trie)


def _escape(ch: str) -> str:
    return "\\" + ch if ch in "\\^-]{}()[.*+?|$" else ch
