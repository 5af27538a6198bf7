"""What the front listener refuses or rewrites before any filter, route or Link sees a request.

Three concerns, one function each, all applied to the ingress HTTP connection manager:

* the path: normalized once (RFC 3986 dot segments, merged slashes), escaped slashes and
  backslashes refused, so the path Envoy routes on, Link decides on and the gateway receives
  is the same string (docs/adr/0006-paths-normalization.md);
* the identity headers Link owns: removed from the client's request before ext_authz runs,
  so no failure mode (Link down with fail-open included) forwards a client-chosen tenant;
* the protocol: HTTP/1.0 answered, underscore spellings of header names dropped, a header-count
  limit leaving room for the headers Link adds (a 431, never Envoy's bare 500).
"""

from __future__ import annotations

from typing import Any

from envoy_data_plane.envoy.config.accesslog.v3 import AccessLogFilter, ExtensionFilter
from envoy_data_plane.envoy.config.common.mutation_rules.v3 import (
    HeaderMutation as MutationRule,
)
from envoy_data_plane.envoy.config.common.mutation_rules.v3 import (
    HeaderMutationRemoveOnMatch,
)
from envoy_data_plane.envoy.config.core.v3 import (
    DataSource,
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
    Http1ProtocolOptions,
    HttpProtocolOptions,
    HttpProtocolOptionsHeadersWithUnderscoresAction,
    SubstitutionFormatString,
    TypedExtensionConfig,
)
from envoy_data_plane.envoy.extensions.access_loggers.filters.cel.v3 import ExpressionFilter
from envoy_data_plane.envoy.extensions.filters.http.lua.v3 import Lua
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManagerPathWithEscapedSlashesAction,
    HttpFilter,
    LocalReplyConfig,
    ResponseMapper,
)
from envoy_data_plane.envoy.extensions.http.early_header_mutation.header_mutation.v3 import (
    HeaderMutation as EarlyHeaderMutation,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.google.protobuf import Any as AnyProto
from envoy_data_plane.google.protobuf import Struct

# The client's own x-request-id survives only under this name: a value to log, never an identifier.
CLIENT_REQUEST_ID_HEADER = "x-client-request-id"

# One header map carries the client's headers and those added before the router: Envoy's own
# (x-request-id, x-forwarded-proto, the fail-open marker) and Link's (tenant, consumer, subject,
# traceparent, tracestate...). ext_authz refuses, with a bare 500, a decision whose headers would push
# the map past ``max_headers_count``. So the map may hold UPSTREAM_HEADER_LIMIT (100, Envoy's and many
# gateways' default), and a client request may hold that minus the headroom: past it, a 431.
UPSTREAM_HEADER_LIMIT = 100
LINK_HEADER_HEADROOM = 20
CLIENT_HEADER_LIMIT = UPSTREAM_HEADER_LIMIT - LINK_HEADER_HEADROOM
HEADER_GUARD_FILTER = "stoa.client_header_limit"

# Counts every entry of the map (pseudo-headers included, as max_headers_count does); stops early.
_HEADER_GUARD_LUA = """
function envoy_on_request(handle)
  local count = 0
  for _, _ in pairs(handle:headers()) do
    count = count + 1
    if count > %(limit)d then
      handle:respond({[":status"] = "431"}, "")  -- the body is written by the local reply mappers
      return
    end
  end
end
"""


def path_normalization() -> dict[str, Any]:
    """HCM fields: one normalized path for routing, ext_authz, ext_proc and the upstream.

    ``normalize_path`` resolves RFC 3986 §5.2.4 dot segments (``%2e`` counts as a dot) and
    ``merge_slashes`` merges ``//``. Escaped slashes and backslashes (``%2F``, ``%5C``) are refused
    with 400 rather than decoded: the gateway behind may or may not treat them as separators, so no
    decoded or kept spelling is one that Envoy, Link and the gateway would all read the same way.
    """
    return {
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": HttpConnectionManagerPathWithEscapedSlashesAction.REJECT_REQUEST,
    }


def strip_client_identity(identity_prefix: str, identity_headers: tuple[str, ...]) -> dict[str, Any]:
    """HCM fields: remove every header Link owns before routing, ext_authz or any filter runs.

    An early header mutation runs before request-id generation and before the filter chain, so the
    headers are gone whether Link answers, is down with fail-open, or is not configured at all.
    (A route's ``request_headers_to_remove`` would run at the router, after ext_authz, and remove
    the headers Link adds too.) The client's ``x-request-id`` is moved aside to
    ``x-client-request-id`` and Envoy generates the request id metering and snapshots key on.
    """
    prefix = identity_prefix.lower()
    rules = [MutationRule(remove_on_match=HeaderMutationRemoveOnMatch(
        key_matcher=StringMatcher(prefix=prefix, ignore_case=True)))] if prefix else []
    for name in identity_headers:
        if not prefix or not name.lower().startswith(prefix):
            rules.append(MutationRule(remove=name.lower()))
    rules.append(MutationRule(remove=CLIENT_REQUEST_ID_HEADER))
    rules.append(MutationRule(append=HeaderValueOption(
        header=HeaderValue(key=CLIENT_REQUEST_ID_HEADER, value="%REQ(x-request-id)%"),
        append_action=HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
        keep_empty_value=False)))
    rules.append(MutationRule(remove="x-request-id"))
    early = EarlyHeaderMutation(mutations=rules)
    return {
        "early_header_mutation_extensions": [TypedExtensionConfig(
            name="stoa.strip_client_identity", typed_config=AnyProto.pack(early))],
        "generate_request_id": True,
        "preserve_external_request_id": False,
    }


def client_header_limit() -> HttpFilter:
    """The first HTTP filter: a request with more headers than a client may send gets a 431."""
    lua = Lua(default_source_code=DataSource(inline_string=_HEADER_GUARD_LUA % {"limit": CLIENT_HEADER_LIMIT}))
    return HttpFilter(name=HEADER_GUARD_FILTER, typed_config=AnyProto.pack(lua))


def protocol_hygiene(http10_default_host: str) -> dict[str, Any]:
    """HCM fields: HTTP/1.0 answered, ``x_stoa_tenant`` dropped, header count bounded.

    Underscored names are dropped (not rejected): a rejection is a 400 on HTTP/1 but a bare stream
    reset on HTTP/2, and dropping is enough since nothing behind Envoy then sees the spelling some
    stacks (CGI, WSGI, nginx with ``underscores_in_headers``) fold into ``x-stoa-tenant``.
    """
    return {
        "common_http_protocol_options": HttpProtocolOptions(
            headers_with_underscores_action=HttpProtocolOptionsHeadersWithUnderscoresAction.DROP_HEADER,
            max_headers_count=UPSTREAM_HEADER_LIMIT,
        ),
        # HTTP/1.0 clients (probes, old tools) get an answer; without a Host they land on a default host.
        "http_protocol_options": Http1ProtocolOptions(accept_http_10=True,
                                                      default_host_for_http_10=http10_default_host),
    }


# Envoy's own refusals, titled like Link's (link/pipeline/response.py).
_TITLES = {400: "bad_request", 404: "not_found", 408: "request_timeout", 413: "payload_too_large",
           414: "uri_too_long", 431: "request_header_fields_too_large"}
# Why, in words a client can act on, where Envoy's response code details would say "lua_response".
_REASONS = {431: "too many or too large request headers"}
# Response code details of the local replies Envoy makes itself (codecs, path checks, routing,
# buffering, timeouts, the header guard). Matched by name, so Link's own refusals (through ext_authz
# or ext_proc, with their JSON bodies) are never rewritten.
_ENVOY_DETAILS = ("path_normalization_failed", "lua_response", "request_payload_too_large", "route_not_found",
                  "direct_response", "request_overall_timeout", "request_header_timeout",
                  "missing_host_header", "missing_path_header", "invalid_authority")
_ENVOY_DETAIL_PREFIXES = ("http1.", "http2.")


def _envoy_refusal(code: int) -> AccessLogFilter:
    """A local reply with this status that Envoy made itself (a CEL filter on the response code details)."""
    named = " || ".join([*(f"response.code_details == '{d}'" for d in _ENVOY_DETAILS),
                         *(f"response.code_details.startsWith('{p}')" for p in _ENVOY_DETAIL_PREFIXES)])
    return AccessLogFilter(extension_filter=ExtensionFilter(
        name="envoy.access_loggers.extension_filters.cel",
        typed_config=AnyProto.pack(ExpressionFilter(expression=f"response.code == {code} && ({named})"))))


def _json_body(title: str, reason: str) -> SubstitutionFormatString:
    return SubstitutionFormatString(content_type="application/json", json_format=Struct.from_dict(
        {"error": title, "reason": reason, "request_id": "%REQ(X-REQUEST-ID)%"}))


def local_replies() -> dict[str, Any]:
    """HCM field: Envoy's own 4xx (bad path, malformed request, too many headers) as Link's JSON.

    One mapper per status; the first match wins. Other local replies (Link's decisions, 5xx such
    as proxy mode's upstream failures, which it appends) are left to later mappers or unchanged.
    """
    return {"local_reply_config": LocalReplyConfig(mappers=[
        ResponseMapper(filter=_envoy_refusal(code),
                       body_format_override=_json_body(title, _REASONS.get(code, "%RESPONSE_CODE_DETAILS%")))
        for code, title in _TITLES.items()])}


def edge_fields(identity_prefix: str, identity_headers: tuple[str, ...], link_filters: bool,
                http10_default_host: str) -> dict[str, Any]:
    """Every listener-level hygiene field for the ingress HCM."""
    fields = {**path_normalization(), **protocol_hygiene(http10_default_host), **local_replies()}
    if link_filters:
        fields.update(strip_client_identity(identity_prefix, identity_headers))
    return fields
