"""The Envoy bootstrap of proxy mode: the sidecar's request path, with Envoy routing to the upstreams itself.

Proxy mode is the sidecar bootstrap (:func:`~link.envoyconf.bootstrap.build_bootstrap`:
the same Link filters, path rules, identity-header stripping, access log) with
what a full gateway adds, written on top of it:

- one cluster per upstream, each with circuit breaking: connection/request
  thresholds, a retry budget, and outlier detection that ejects an upstream
  that keeps failing (then readmits it after ``base_ejection_s``); while every
  host is ejected Envoy answers at once with a JSON 503;
- one Envoy route per Link route, in Link's order, so Envoy and Link agree on
  which route a request is: its upstream, retries only where the request never
  reached the upstream, and its declared transforms (headers added, removed,
  renamed both ways; path prefix or template rewrite; query parameters set or
  removed). JSON body transforms are Link's (ext_proc on those routes only);
- optionally downstream TLS with client certificates, from files Envoy watches
  (SDS), so certificates rotate without a restart.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from envoy_data_plane.envoy.config.cluster.v3 import (
    CircuitBreakers,
    CircuitBreakersThresholds,
    CircuitBreakersThresholdsRetryBudget,
)
from envoy_data_plane.envoy.config.core.v3 import (
    ConfigSource,
    DataSource,
    GrpcService,
    GrpcServiceEnvoyGrpc,
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
    PathConfigSource,
    TransportSocket,
    TypedExtensionConfig,
    WatchedDirectory,
)
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    HeaderMatcher,
    RetryPolicy,
    Route,
    RouteAction,
    RouteMatch,
)
from envoy_data_plane.envoy.extensions.filters.http.ext_proc.v3 import (
    ExternalProcessor,
    ExtProcOverrides,
    ExtProcPerRoute,
    ProcessingMode,
    ProcessingModeBodySendMode,
    ProcessingModeHeaderSendMode,
)
from envoy_data_plane.envoy.extensions.filters.http.header_mutation.v3 import (
    HeaderMutation,
    Mutations,
)
from envoy_data_plane.envoy.extensions.path.match.uri_template.v3 import UriTemplateMatchConfig
from envoy_data_plane.envoy.extensions.path.rewrite.uri_template.v3 import UriTemplateRewriteConfig
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CertificateValidationContext,
    CommonTlsContext,
    DownstreamTlsContext,
    SdsSecretConfig,
    Secret,
    SubjectAltNameMatcher,
    SubjectAltNameMatcherSanType,
    TlsCertificate,
)
from envoy_data_plane.envoy.type.matcher.v3 import RegexMatcher, StringMatcher
from envoy_data_plane.envoy.type.v3 import Percent

from link.envoyconf.bootstrap import UPSTREAM_CLUSTER, _address, _pack, _static_cluster
from link.settings import ProxySettings, RouteSettings, Settings

__all__ = ["TRANSFORM_FILTER", "build_proxy_bootstrap", "sds_files"]

# A header_mutation filter just before the router: query parameter changes happen after the decision.
TRANSFORM_FILTER = "stoa.proxy.transform"
# A second ext_proc filter, off unless a route transforms JSON bodies: Link's body-transform service.
BODY_TRANSFORM_FILTER = "stoa.proxy.body_transform"
BODY_TRANSFORM_CLUSTER = "stoa_link_transform"
_SERVER_CERT = "proxy_server_cert"
_CLIENT_CA = "proxy_client_ca"
_OVERWRITE = HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD
# Local replies Envoy makes about upstreams, as Link's JSON errors: (response flag, status, reason).
_UPSTREAM_FAILURES = (
    ("UH", 503, "no_healthy_upstream"),
    ("UO", 503, "upstream_overflow"),
    ("UF", 503, "upstream_connect_failure"),
    ("URX", 503, "upstream_retry_limit_exceeded"),
    ("UT", 504, "upstream_timeout"),
)


@dataclass(frozen=True, slots=True)
class _Upstream:
    cluster: str
    url: str


def _upstreams(settings: Settings) -> dict[str, _Upstream]:
    """Upstream URL -> its cluster; the default upstream keeps the sidecar's cluster name."""
    out: dict[str, _Upstream] = {}
    if settings.proxy.upstream:
        out[settings.proxy.upstream] = _Upstream(UPSTREAM_CLUSTER, settings.proxy.upstream)
    for route in settings.routes:
        if route.upstream and route.upstream not in out:
            out[route.upstream] = _Upstream(f"upstream_{len(out)}", route.upstream)
    return out


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


def _ms(ms: float) -> dt.timedelta:
    return dt.timedelta(milliseconds=ms)


def _resilience(cluster: dict[str, Any], p: ProxySettings) -> None:
    """Circuit breaking and outlier detection on one upstream cluster (in its dict form)."""
    cluster["circuitBreakers"] = CircuitBreakers(thresholds=[CircuitBreakersThresholds(
        max_connections=p.max_connections, max_pending_requests=p.max_pending_requests,
        max_requests=p.max_requests,
        retry_budget=CircuitBreakersThresholdsRetryBudget(budget_percent=Percent(value=p.retry_budget_percent),
                                                          min_retry_concurrency=3),
    )]).to_dict()
    # Written in proto JSON by hand: the generated to_dict spells consecutive_5xx "consecutive5Xx".
    # Connect failures and resets count as 5xx (split_external_local_origin_errors stays off).
    cluster["outlierDetection"] = {
        "consecutive5xx": p.consecutive_errors,
        "consecutiveGatewayFailure": p.consecutive_errors,
        "enforcingConsecutive5xx": 100,
        "enforcingConsecutiveGatewayFailure": 100,
        "interval": _duration(p.ejection_interval_s),
        "baseEjectionTime": _duration(p.base_ejection_s),
        "maxEjectionTime": _duration(max(p.base_ejection_s, 300.0)),
        "maxEjectionPercent": p.max_ejection_percent,
    }
    cluster["connectTimeout"] = f"{p.connect_timeout_ms / 1000:.3f}s"
    # No panic routing: when every host is ejected, answer at once (JSON 503) instead of trying them anyway.
    cluster["commonLbConfig"] = {"healthyPanicThreshold": {"value": 0}}


def _header_options(values: dict[str, str]) -> list[HeaderValueOption]:
    return [HeaderValueOption(header=HeaderValue(key=k, value=v), append_action=_OVERWRITE) for k, v in values.items()]


def _renames(renames: dict[str, str], request: bool) -> list[dict[str, Any]]:
    """Header renames as ordered header_mutation steps: add new from old, then remove old.

    (A route's own ``*_headers_to_remove`` runs before its ``*_headers_to_add``, so it cannot rename.)
    An absent old header adds nothing: empty values are not kept.
    """
    source = "REQ" if request else "RESP"
    steps: list[dict[str, Any]] = []
    for old, new in renames.items():
        steps.append({"append": {"header": {"key": new, "value": f"%{source}({old})%"},
                                 "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD", "keepEmptyValue": False}})
        steps.append({"remove": old})
    return steps


def _query_mutations(route: RouteSettings) -> list[dict[str, Any]]:
    """``KeyValueMutation`` entries in proto JSON (a record's value is a protobuf Value: a string here)."""
    t = route.transform
    if t is None:
        return []
    muts: list[dict[str, Any]] = [{"remove": k} for k in t.query_remove]
    muts += [{"append": {"record": {"key": k, "value": v}, "action": "OVERWRITE_IF_EXISTS_OR_ADD"}}
             for k, v in t.query_add.items()]
    return muts


def _match(route: RouteSettings) -> RouteMatch:
    headers = []
    if route.methods:
        methods = "|".join(sorted(m.upper() for m in route.methods))
        headers.append(HeaderMatcher(name=":method", string_match=StringMatcher(
            safe_regex=RegexMatcher(regex=f"^({methods})$"))))
    if route.template is not None:
        return RouteMatch(path_match_policy=TypedExtensionConfig(
            name="envoy.path.match.uri_template.uri_template_matcher",
            typed_config=_pack(UriTemplateMatchConfig(path_template=route.template))), headers=headers)
    prefix = route.prefix or "/"
    if prefix == "/":
        return RouteMatch(prefix="/", headers=headers)
    # /api matches /api and /api/… but not /apix (as Link's route table does).
    return RouteMatch(path_separated_prefix=prefix.rstrip("/"), headers=headers)


def _route(route: RouteSettings, cluster: str, p: ProxySettings, per_filter: dict[str, Any]) -> dict[str, Any]:
    t = route.transform
    action = RouteAction(
        cluster=cluster,
        timeout=_ms(p.route_timeout_s * 1000),
        # Retries only where the request never reached the upstream: safe for every method.
        retry_policy=RetryPolicy(retry_on="connect-failure,refused-stream,reset-before-request",
                                 num_retries=p.retries, host_selection_retry_max_attempts=3),
    )
    if t is not None and t.path_prefix_rewrite is not None:
        action.prefix_rewrite = t.path_prefix_rewrite
    if t is not None and t.path_template_rewrite is not None:
        action.path_rewrite_policy = TypedExtensionConfig(
            name="envoy.path.rewrite.uri_template.uri_template_rewriter",
            typed_config=_pack(UriTemplateRewriteConfig(path_template_rewrite=t.path_template_rewrite)))
    envoy_route = Route(name=f"route:{route.name}", match=_match(route), route=action)
    if t is not None:
        envoy_route.request_headers_to_add = _header_options(t.request_headers_add)
        envoy_route.request_headers_to_remove = list(t.request_headers_remove)
        envoy_route.response_headers_to_add = _header_options(t.response_headers_add)
        envoy_route.response_headers_to_remove = list(t.response_headers_remove)
    out = envoy_route.to_dict()
    config = dict(per_filter)
    mutations: dict[str, Any] = {}
    if muts := _query_mutations(route):
        mutations["queryParameterMutations"] = muts
    if t is not None and t.request_headers_rename:
        mutations["requestMutations"] = _renames(t.request_headers_rename, True)
    if t is not None and t.response_headers_rename:
        mutations["responseMutations"] = _renames(t.response_headers_rename, False)
    body = _body_transform_route_config(route)
    if body is not None:
        config[BODY_TRANSFORM_FILTER] = body
    if mutations:
        config[TRANSFORM_FILTER] = {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute",
            "mutations": mutations}
    if config:
        out["typedPerFilterConfig"] = config
    return out


def _body_transform_route_config(route: RouteSettings) -> dict[str, Any] | None:
    """Per-route switch-on of the body-transform filter, with buffered bodies only where transformed."""
    t = route.transform
    if t is None or (t.request_body is None and t.response_body is None):
        return None
    send, skip = ProcessingModeHeaderSendMode.SEND, ProcessingModeHeaderSendMode.SKIP
    buffered, none = ProcessingModeBodySendMode.BUFFERED, ProcessingModeBodySendMode.NONE
    mode = ProcessingMode(
        request_header_mode=send if t.request_body is not None else skip,
        response_header_mode=send if t.response_body is not None else skip,
        request_body_mode=buffered if t.request_body is not None else none,
        response_body_mode=buffered if t.response_body is not None else none,
        request_trailer_mode=skip, response_trailer_mode=skip)
    from link.proxy.bodies import ROUTE_METADATA

    return _pack(ExtProcPerRoute(overrides=ExtProcOverrides(
        processing_mode=mode, grpc_initial_metadata=[HeaderValue(key=ROUTE_METADATA, value=route.name)]))).to_dict()


def _base_filters_for(route: RouteSettings, base_routes: list[dict[str, Any]]) -> dict[str, Any]:
    """The Link filter settings (bodies, ext_proc) the sidecar builder chose for this route's prefix."""
    path = route.prefix if route.prefix is not None else (route.template or "/")
    head = path.split("{", 1)[0] or "/"
    for base in base_routes:
        prefix = base.get("match", {}).get("prefix")
        if prefix is not None and head.startswith(prefix):
            return dict(base.get("typedPerFilterConfig", {}))
    return {}


def _json_reply(flag: str, status: int, reason: str) -> dict[str, Any]:
    return {
        "filter": {"responseFlagFilter": {"flags": [flag]}},
        "statusCode": status,
        "bodyFormatOverride": {
            "jsonFormat": {"error": "upstream unavailable" if status == 503 else "upstream timeout",
                           "reason": reason, "request_id": "%REQ(X-REQUEST-ID)%"},
            "contentType": "application/json",
        },
    }


def _tls_socket(p: ProxySettings, sds_dir: str) -> dict[str, Any]:
    def sds(name: str, file: str) -> SdsSecretConfig:
        return SdsSecretConfig(name=name, sds_config=ConfigSource(
            path_config_source=PathConfigSource(path=f"{sds_dir}/{file}",
                                                watched_directory=WatchedDirectory(path=sds_dir))))

    common = CommonTlsContext(tls_certificate_sds_secret_configs=[sds(_SERVER_CERT, "server-cert.yaml")],
                              alpn_protocols=["h2", "http/1.1"])
    if p.tls_client_ca_file:
        common.validation_context_sds_secret_config = sds(_CLIENT_CA, "client-ca.yaml")
    ctx = DownstreamTlsContext(common_tls_context=common, require_client_certificate=bool(p.tls_client_ca_file))
    return TransportSocket(name="envoy.transport_sockets.tls", typed_config=_pack(ctx)).to_dict()


def sds_files(p: ProxySettings) -> dict[str, str]:
    """The SDS files the TLS listener reads (file name -> YAML); Envoy re-reads them, and the
    certificate files they name, when their directory changes (a Kubernetes Secret update)."""
    if not p.tls_cert_file or not p.tls_key_file:
        return {}

    def doc(secret: Secret) -> str:
        body = secret.to_dict()
        body["@type"] = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
        return yaml.safe_dump({"resources": [body]}, sort_keys=False)

    files = {"server-cert.yaml": doc(Secret(name=_SERVER_CERT, tls_certificate=TlsCertificate(
        certificate_chain=DataSource(filename=p.tls_cert_file), private_key=DataSource(filename=p.tls_key_file),
        watched_directory=WatchedDirectory(path=str(Path(p.tls_cert_file).parent)))))}
    if p.tls_client_ca_file:
        uri, dns = SubjectAltNameMatcherSanType.URI, SubjectAltNameMatcherSanType.DNS
        sans = [SubjectAltNameMatcher(san_type=uri if "://" in san else dns, matcher=StringMatcher(exact=san))
                for san in p.tls_allowed_sans]
        files["client-ca.yaml"] = doc(Secret(name=_CLIENT_CA, validation_context=CertificateValidationContext(
            trusted_ca=DataSource(filename=p.tls_client_ca_file), match_typed_subject_alt_names=sans,
            watched_directory=WatchedDirectory(path=str(Path(p.tls_client_ca_file).parent)))))
    return files


def _hcm(bootstrap: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    for listener in bootstrap["staticResources"]["listeners"]:
        if listener.get("name") == "ingress":
            chain = listener["filterChains"][0]
            return chain, chain["filters"][0]["typedConfig"]
    raise ValueError("the sidecar bootstrap has no ingress listener")


def build_proxy_bootstrap(settings: Settings, sds_dir: str = "/etc/stoa/sds", **overrides: Any) -> dict[str, Any]:
    """The proxy-mode bootstrap for (effective) proxy settings; ``overrides`` go to the sidecar builder."""
    from link.envoyconf.bootstrap import build_bootstrap
    from link.envoyconf.from_settings import envoy_options

    p = settings.proxy
    ups = _upstreams(settings)
    if not ups:
        raise ValueError("proxy mode needs an upstream (--upstream URL, or routes[].upstream)")
    default_url = p.upstream or next(iter(ups))
    bootstrap = build_bootstrap(envoy_options(settings, upstream=default_url, **overrides))
    chain, hcm = _hcm(bootstrap)

    clusters = bootstrap["staticResources"]["clusters"]
    for up in ups.values():
        if up.cluster == UPSTREAM_CLUSTER:
            continue
        parts = urlsplit(up.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        cluster = _static_cluster(up.cluster, [_address(f"{parts.hostname}:{port}")], p.connect_timeout_ms,
                                  http2=False, tls_sni=parts.hostname if parts.scheme == "https" else None)
        clusters.append(cluster.to_dict())
    for cluster in clusters:
        if cluster["name"] == UPSTREAM_CLUSTER or cluster["name"].startswith("upstream_"):
            _resilience(cluster, p)

    vhost = hcm["routeConfig"]["virtualHosts"][0]
    base_routes: list[dict[str, Any]] = vhost["routes"]
    routes = [_route(r, ups[r.upstream or default_url].cluster, p, _base_filters_for(r, base_routes))
              for r in settings.routes]
    if not p.upstream:
        # No default upstream: a request no route claims is a clean 404, not another API's.
        for base in base_routes:
            base.pop("route", None)
            base["directResponse"] = DirectResponseAction(status=404).to_dict()
    vhost["routes"] = [*routes, *base_routes]

    filters = hcm["httpFilters"]
    transform = {"name": TRANSFORM_FILTER, "typedConfig": _pack(HeaderMutation(mutations=Mutations())).to_dict()}
    filters.insert(len(filters) - 1, transform)  # just before the router
    if any(_body_transform_route_config(r) is not None for r in settings.routes):
        clusters.append(_static_cluster(BODY_TRANSFORM_CLUSTER, [_address(p.transform_address)], 250,
                                        http2=True).to_dict())
        body_filter = ExternalProcessor(
            grpc_service=GrpcService(envoy_grpc=GrpcServiceEnvoyGrpc(cluster_name=BODY_TRANSFORM_CLUSTER),
                                     timeout=_ms(p.transform_timeout_ms)),
            message_timeout=_ms(p.transform_timeout_ms),
            # A transform that cannot run must not turn into an unchanged pass on a route that needs it.
            failure_mode_allow=False,
            stat_prefix="stoa_body_transform",
        )
        filters.insert(len(filters) - 1, {"name": BODY_TRANSFORM_FILTER, "disabled": True,
                                          "typedConfig": _pack(body_filter).to_dict()})
    mappers = hcm.setdefault("localReplyConfig", {}).setdefault("mappers", [])
    mappers.extend(_json_reply(*f) for f in _UPSTREAM_FAILURES)

    # SDS (even from files) needs a node identity.
    bootstrap.setdefault("node", {"id": "stoa-link-proxy", "cluster": "stoa-link"})
    if p.tls_cert_file:
        chain["transportSocket"] = _tls_socket(p, sds_dir)
        # The verified client certificate travels to Link (and only Envoy's: a client's XFCC is replaced).
        hcm["forwardClientCertDetails"] = "SANITIZE_SET"
        hcm["setCurrentClientCertDetails"] = {"subject": True, "uri": True, "dns": True, "cert": True}
    return bootstrap
