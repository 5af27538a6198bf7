"""The Envoy bootstrap of shadow mode: a transparent proxy that lets Link watch, never decide.

Zero modification is the design rule. The listener forwards every request to
the legacy API exactly as it came (no path normalization, no header added or
removed, Envoy's own ``x-envoy-*`` headers suppressed, no ext_authz). The only
Link filter is ext_proc in *observability mode*: Envoy sends headers and bodies
"send and go", never waits for an answer and ignores any; with
``failure_mode_allow`` an absent Link changes nothing either. Only APIs that
opted in get the filter; the others are proxied without it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from envoy_data_plane.envoy.config.bootstrap.v3 import Admin, Bootstrap, BootstrapStaticResources
from envoy_data_plane.envoy.config.core.v3 import HeaderValue, Http1ProtocolOptions
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.route.v3 import Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost
from envoy_data_plane.envoy.extensions.filters.http.ext_proc.v3 import (
    ExternalProcessor,
    ExtProcOverrides,
    ExtProcPerRoute,
    ProcessingMode,
    ProcessingModeBodySendMode,
    ProcessingModeHeaderSendMode,
)
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerServerHeaderTransformation,
    HttpFilter,
)

from link.envoyconf.bootstrap import (
    EnvoyOptions,
    _address,
    _grpc,
    _health_listener,
    _overload_manager,
    _pack,
    _static_cluster,
)

__all__ = ["SHADOW_API_METADATA", "ShadowApi", "ShadowEnvoyOptions", "build_shadow_bootstrap"]

SHADOW_CLUSTER = "stoa_link_shadow"
EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
# gRPC initial metadata naming the API a stream belongs to (set per route).
SHADOW_API_METADATA = "x-stoa-shadow-api"


@dataclass(frozen=True, slots=True)
class ShadowApi:
    """One legacy API behind the shadow proxy."""

    name: str
    target: str  # http(s)://host:port of the legacy API
    prefix: str = "/"
    opt_in: bool = True


@dataclass(frozen=True, slots=True)
class ShadowEnvoyOptions:
    apis: tuple[ShadowApi, ...]
    listen_address: str = "0.0.0.0"
    listen_port: int = 8080
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    link: str = "127.0.0.1:9191"
    message_timeout_ms: int = 200
    health_port: int = 0  # a listener answering /ready for Kubernetes probes; 0 = none
    # Overload manager, as in the sidecar (a connection cap, a heap watch); 0 turns a monitor off.
    max_downstream_connections: int = 4_096
    max_heap_bytes: int = 192 << 20  # under the shadow Envoy container's 256Mi memory limit


def _observe_mode() -> ProcessingMode:
    return ProcessingMode(
        request_header_mode=ProcessingModeHeaderSendMode.SEND,
        response_header_mode=ProcessingModeHeaderSendMode.SEND,
        # Observability mode supports only streamed bodies.
        request_body_mode=ProcessingModeBodySendMode.STREAMED,
        response_body_mode=ProcessingModeBodySendMode.STREAMED,
        request_trailer_mode=ProcessingModeHeaderSendMode.SKIP,
        response_trailer_mode=ProcessingModeHeaderSendMode.SKIP,
    )


def _cluster_name(api: ShadowApi) -> str:
    return f"legacy_{api.name}"


def _route(api: ShadowApi) -> Route:
    per_route: Any
    if api.opt_in:
        per_route = ExtProcPerRoute(overrides=ExtProcOverrides(
            grpc_initial_metadata=[HeaderValue(key=SHADOW_API_METADATA, value=api.name)]))
    else:
        per_route = ExtProcPerRoute(disabled=True)  # no opt-in, no capture
    return Route(
        name=api.name,
        match=RouteMatch(prefix=api.prefix),
        # Host header and path go upstream as sent; no timeout of ours on a legacy API's slow answers.
        route=RouteAction(cluster=_cluster_name(api), timeout=dt.timedelta(seconds=0)),
        typed_per_filter_config={EXT_PROC_FILTER: _pack(per_route)},
    )


def build_shadow_bootstrap(opts: ShadowEnvoyOptions) -> dict[str, Any]:
    """The bootstrap as a plain dict (Envoy's JSON/YAML form)."""
    if not opts.apis:
        raise ValueError("shadow mode needs at least one API (--target)")
    routes = [_route(api) for api in sorted(opts.apis, key=lambda a: len(a.prefix), reverse=True)]
    hcm = HttpConnectionManager(
        stat_prefix="shadow",
        route_config=RouteConfiguration(
            name="shadow", virtual_hosts=[VirtualHost(name="all", domains=["*"], routes=routes)]),
        http_filters=[
            HttpFilter(name=EXT_PROC_FILTER, typed_config=_pack(ExternalProcessor(
                grpc_service=_grpc(SHADOW_CLUSTER, opts.message_timeout_ms),
                observability_mode=True,
                failure_mode_allow=True,
                processing_mode=_observe_mode(),
                message_timeout=dt.timedelta(milliseconds=opts.message_timeout_ms),
                deferred_close_timeout=dt.timedelta(milliseconds=opts.message_timeout_ms),
                stat_prefix="stoa_shadow",
            ))),
            HttpFilter(name="envoy.filters.http.router", typed_config=_pack(Router(suppress_envoy_headers=True))),
        ],
        # Pass the request through as the client wrote it.
        normalize_path=False,
        merge_slashes=False,
        http_protocol_options=Http1ProtocolOptions(accept_http_10=True),
        # The legacy API's Server header, not Envoy's.
        server_header_transformation=HttpConnectionManagerServerHeaderTransformation.PASS_THROUGH,
        # Do not add x-request-id or x-forwarded-proto: the legacy API sees what it saw before.
        generate_request_id=False,
    )
    listener = Listener(
        name="shadow",
        address=_address(f"{opts.listen_address}:{opts.listen_port}"),
        filter_chains=[FilterChain(filters=[Filter(
            name="envoy.filters.network.http_connection_manager", typed_config=_pack(hcm))])],
    )
    listeners = [listener]
    if opts.health_port:
        listeners.append(_health_listener(EnvoyOptions(listen_address=opts.listen_address,
                                                       health_port=opts.health_port)))
    clusters = [_static_cluster(SHADOW_CLUSTER, [_address(opts.link)], 250, http2=True)]
    for api in opts.apis:
        up = urlsplit(api.target)
        if up.scheme not in ("http", "https") or not up.hostname:
            raise ValueError(f"target {api.target!r}: expected http(s)://host:port")
        port = up.port or (443 if up.scheme == "https" else 80)
        clusters.append(_static_cluster(_cluster_name(api), [_address(f"{up.hostname}:{port}")], 1000, http2=False,
                                        tls_sni=up.hostname if up.scheme == "https" else None))
    bootstrap = Bootstrap(
        admin=Admin(address=_address(f"{opts.admin_address}:{opts.admin_port}")),
        static_resources=BootstrapStaticResources(listeners=listeners, clusters=clusters),
        # A legacy API's traffic must not take Envoy past its memory limit either (the health
        # listener is exempt from the connection cap).
        overload_manager=_overload_manager(EnvoyOptions(max_downstream_connections=opts.max_downstream_connections,
                                                        max_heap_bytes=opts.max_heap_bytes)),
    )
    out = bootstrap.to_dict()
    _explicit(out)
    return out


def _explicit(node: Any) -> None:
    """Proto JSON omits false booleans: write out the ones a reviewer must see."""
    if isinstance(node, dict):
        kind = str(node.get("@type", ""))
        if kind.endswith("HttpConnectionManager"):
            node.setdefault("normalizePath", False)
            node.setdefault("mergeSlashes", False)
            node.setdefault("generateRequestId", False)
        for v in node.values():
            _explicit(v)
    elif isinstance(node, list):
        for v in node:
            _explicit(v)
