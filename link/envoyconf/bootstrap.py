"""Build the Envoy v3 bootstrap for a Link sidecar from typed Envoy API objects.

One listener -> ext_authz (decide, unary) -> ext_proc (only on routes that need
bodies) -> router to the primary gateway; a gRPC access log back to Link for
outcomes. Every timeout and failure behaviour is written out explicitly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml
from envoy_data_plane.envoy.config.accesslog.v3 import AccessLog
from envoy_data_plane.envoy.config.bootstrap.v3 import Admin, Bootstrap, BootstrapStaticResources
from envoy_data_plane.envoy.config.cluster.v3 import (
    CircuitBreakers,
    CircuitBreakersThresholds,
    Cluster,
    ClusterDiscoveryType,
)
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    ApiVersion,
    GrpcService,
    GrpcServiceEnvoyGrpc,
    Http2ProtocolOptions,
    KeepaliveSettings,
    Pipe,
    SocketAddress,
    TransportSocket,
)
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    HeaderMatcher,
    Route,
    RouteAction,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.config.trace.v3 import OpenTelemetryConfig
from envoy_data_plane.envoy.extensions.access_loggers.grpc.v3 import (
    CommonGrpcAccessLogConfig,
    HttpGrpcAccessLogConfig,
)
from envoy_data_plane.envoy.extensions.filters.http.ext_authz.v3 import (
    BufferSettings,
    CheckSettings,
    ExtAuthz,
    ExtAuthzPerRoute,
)
from envoy_data_plane.envoy.extensions.filters.http.ext_proc.v3 import (
    ExternalProcessor,
    ExtProcOverrides,
    ExtProcPerRoute,
    MetadataOptions,
    MetadataOptionsMetadataNamespaces,
    ProcessingMode,
    ProcessingModeBodySendMode,
    ProcessingModeHeaderSendMode,
)
from envoy_data_plane.envoy.extensions.filters.http.health_check.v3 import HealthCheck
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerTracing,
    HttpFilter,
)
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import UpstreamTlsContext
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions,
    HttpProtocolOptionsExplicitHttpConfig,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.envoy.type.tracing.v3 import CustomTag
from envoy_data_plane.envoy.type.v3 import HttpStatus, Percent, StatusCode
from envoy_data_plane.google.protobuf import Any as AnyProto

from link.settings import PRIMARY_GATEWAY_PORTS

LINK_CLUSTER = "stoa_link"
UPSTREAM_CLUSTER = "primary_gateway"
OTEL_CLUSTER = "otel_collector"
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
_H2_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@dataclass(frozen=True, slots=True)
class EnvoyOptions:
    """Everything the generated bootstrap depends on."""

    primary_gateway: str = "kong"
    upstream: str | None = None  # URL; default http://127.0.0.1:<gateway port>
    listen_address: str = "0.0.0.0"
    listen_port: int = 8080
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    link: tuple[str, ...] = ("127.0.0.1:9191",)  # host:port or unix:/path, one per Link process
    failure_mode: str = "closed"  # closed | open
    authz_timeout_ms: int = 200
    ext_proc_timeout_ms: int = 200
    ext_proc_prefixes: tuple[str, ...] = ()
    max_request_body_bytes: int = 65_536
    access_log_buffer_bytes: int = 1 << 20
    access_log_flush_ms: int = 200
    otlp_endpoint: str | None = None  # host:port of an OTLP/gRPC collector; enables Envoy tracing
    service_name: str = "stoa-link-envoy"
    trace_sampling_percent: float = 100.0
    trace_flush_interval_ms: int = 0  # 0 = Envoy's default (5 s)
    extra_headers_to_log: tuple[str, ...] = field(default=("traceparent",))
    # False: a plain proxy with no Link filters (the benchmark's baseline).
    link_filters: bool = True
    # A listener answering /ready (200, or 503 while draining) for Kubernetes probes; 0 = none.
    # The admin interface stays on loopback, so kubelet cannot use it.
    health_port: int = 0

    def upstream_url(self) -> str:
        return self.upstream or f"http://127.0.0.1:{PRIMARY_GATEWAY_PORTS[self.primary_gateway]}"


def _ms(ms: int) -> dt.timedelta:
    return dt.timedelta(milliseconds=ms)


def _pack(msg: Any) -> AnyProto:
    return AnyProto.pack(msg)


def _address(spec: str) -> Address:
    if spec.startswith("unix:"):
        return Address(pipe=Pipe(path=spec[len("unix:"):]))
    host, _, port = spec.rpartition(":")
    return Address(socket_address=SocketAddress(address=host.strip("[]"), port_value=int(port)))


def _grpc(cluster: str, timeout_ms: int) -> GrpcService:
    return GrpcService(envoy_grpc=GrpcServiceEnvoyGrpc(cluster_name=cluster), timeout=_ms(timeout_ms))


def _h2_options() -> dict[str, AnyProto]:
    # Envoy pings idle gRPC connections so a dead Link is noticed without a request failing first.
    h2 = Http2ProtocolOptions(
        connection_keepalive=KeepaliveSettings(interval=dt.timedelta(seconds=30), timeout=dt.timedelta(seconds=5)),
    )
    return {_H2_OPTIONS: _pack(HttpProtocolOptions(
        explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(http2_protocol_options=h2)))}


def _static_cluster(name: str, addresses: list[Address], connect_ms: int, http2: bool,
                    tls_sni: str | None = None) -> Cluster:
    kind = ClusterDiscoveryType.STATIC
    if any(a.socket_address and not _is_ip(a.socket_address.address) for a in addresses):
        kind = ClusterDiscoveryType.STRICT_DNS
    cluster = Cluster(
        name=name,
        type=kind,
        connect_timeout=_ms(connect_ms),
        load_assignment=ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[LocalityLbEndpoints(lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=a)) for a in addresses])],
        ),
        circuit_breakers=CircuitBreakers(thresholds=[CircuitBreakersThresholds(
            max_connections=10_000, max_pending_requests=10_000,
            max_requests=10_000)]),
    )
    if http2:
        cluster.typed_extension_protocol_options = _h2_options()
    if tls_sni is not None:
        cluster.transport_socket = TransportSocket(
            name="envoy.transport_sockets.tls", typed_config=_pack(UpstreamTlsContext(sni=tls_sni)))
    return cluster


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _ext_authz(opts: EnvoyOptions) -> ExtAuthz:
    fail_open = opts.failure_mode == "open"
    return ExtAuthz(
        grpc_service=_grpc(LINK_CLUSTER, opts.authz_timeout_ms),
        transport_api_version=ApiVersion.V3,
        failure_mode_allow=fail_open,
        failure_mode_allow_header_add=fail_open,
        # An unreachable Link is an outage (503), never a 403 the client would take for a denial.
        status_on_error=HttpStatus(code=StatusCode.ServiceUnavailable),
        include_peer_certificate=True,
        stat_prefix="stoa_link",
    )


def _ext_proc(opts: EnvoyOptions) -> ExternalProcessor:
    return ExternalProcessor(
        grpc_service=_grpc(LINK_CLUSTER, opts.ext_proc_timeout_ms),
        failure_mode_allow=opts.failure_mode == "open",
        message_timeout=_ms(opts.ext_proc_timeout_ms),
        processing_mode=_body_mode(),
        stat_prefix="stoa_link",
        # ext_authz's decision travels along, so ext_proc does not decide twice.
        metadata_options=MetadataOptions(
            forwarding_namespaces=MetadataOptionsMetadataNamespaces(untyped=[EXT_AUTHZ_FILTER]),
            receiving_namespaces=MetadataOptionsMetadataNamespaces(untyped=[EXT_AUTHZ_FILTER]),
        ),
    )


def _body_mode() -> ProcessingMode:
    return ProcessingMode(
        request_header_mode=ProcessingModeHeaderSendMode.SEND,
        response_header_mode=ProcessingModeHeaderSendMode.SEND,
        request_body_mode=ProcessingModeBodySendMode.BUFFERED_PARTIAL,
        response_body_mode=ProcessingModeBodySendMode.BUFFERED_PARTIAL,
        request_trailer_mode=ProcessingModeHeaderSendMode.SKIP,
        response_trailer_mode=ProcessingModeHeaderSendMode.SKIP,
    )


def _routes(opts: EnvoyOptions) -> list[Route]:
    action = RouteAction(cluster=UPSTREAM_CLUSTER, timeout=dt.timedelta(seconds=30))
    if not opts.link_filters:
        return [Route(name="default", match=RouteMatch(prefix="/"), route=action)]
    routes: list[Route] = []
    for prefix in opts.ext_proc_prefixes:
        # Routes that need bodies: ext_proc on, and ext_authz sees the request body too.
        routes.append(Route(
            name=f"body:{prefix}",
            match=RouteMatch(prefix=prefix),
            route=action,
            typed_per_filter_config={
                EXT_AUTHZ_FILTER: _pack(ExtAuthzPerRoute(check_settings=CheckSettings(
                    with_request_body=BufferSettings(max_request_bytes=opts.max_request_body_bytes,
                                                     allow_partial_message=True, pack_as_bytes=True)))),
                EXT_PROC_FILTER: _pack(ExtProcPerRoute(overrides=ExtProcOverrides(processing_mode=_body_mode()))),
            },
        ))
    routes.append(Route(
        name="default",
        match=RouteMatch(prefix="/"),
        route=action,
        # Everything else pays only the unary ext_authz check.
        typed_per_filter_config={EXT_PROC_FILTER: _pack(ExtProcPerRoute(disabled=True))},
    ))
    return routes


def _access_log(opts: EnvoyOptions) -> AccessLog:
    return AccessLog(
        name="envoy.access_loggers.http_grpc",
        typed_config=_pack(HttpGrpcAccessLogConfig(
            common_config=CommonGrpcAccessLogConfig(
                log_name="stoa_link",
                grpc_service=_grpc(LINK_CLUSTER, 1000),
                transport_api_version=ApiVersion.V3,
                buffer_size_bytes=opts.access_log_buffer_bytes,
                buffer_flush_interval=_ms(opts.access_log_flush_ms),
            ),
            additional_request_headers_to_log=list(opts.extra_headers_to_log),
        )),
    )


def _tracing(opts: EnvoyOptions) -> HttpConnectionManagerTracing | None:
    if not opts.otlp_endpoint:
        return None
    from envoy_data_plane.envoy.config.trace.v3 import TracingHttp

    provider = TracingHttp(
        name="envoy.tracers.opentelemetry",
        typed_config=_pack(OpenTelemetryConfig(grpc_service=_grpc(OTEL_CLUSTER, 1000),
                                               service_name=opts.service_name)),
    )
    # Envoy's span is the server span; its name and tags come from what Link decided (dynamic metadata).
    from link.telemetry.envoy_tracing import ENVOY_SPAN_OPERATION, ENVOY_SPAN_TAGS

    return HttpConnectionManagerTracing(
        provider=provider,
        spawn_upstream_span=False,
        random_sampling=Percent(value=opts.trace_sampling_percent),
        operation=ENVOY_SPAN_OPERATION,
        custom_tags=[CustomTag(tag=tag, value=value) for tag, value in ENVOY_SPAN_TAGS],
    )


def _health_listener(opts: EnvoyOptions) -> Listener:
    """Envoy's own health: the health_check filter answers without touching any upstream."""
    hcm = HttpConnectionManager(
        stat_prefix="health",
        route_config=RouteConfiguration(name="health", virtual_hosts=[VirtualHost(
            name="health", domains=["*"],
            routes=[Route(match=RouteMatch(prefix="/"), direct_response=DirectResponseAction(status=404))])]),
        http_filters=[
            HttpFilter(name="envoy.filters.http.health_check", typed_config=_pack(HealthCheck(
                pass_through_mode=False,
                headers=[HeaderMatcher(name=":path", string_match=StringMatcher(exact="/ready"))]))),
            HttpFilter(name="envoy.filters.http.router", typed_config=_pack(Router())),
        ],
    )
    return Listener(
        name="health",
        address=_address(f"{opts.listen_address}:{opts.health_port}"),
        filter_chains=[FilterChain(filters=[Filter(
            name="envoy.filters.network.http_connection_manager", typed_config=_pack(hcm))])],
    )


def build_bootstrap(opts: EnvoyOptions) -> dict[str, Any]:
    """The bootstrap as a plain dict (Envoy's JSON/YAML form)."""
    hcm = HttpConnectionManager(
        stat_prefix="ingress",
        route_config=RouteConfiguration(
            name="primary_gateway",
            virtual_hosts=[VirtualHost(name="all", domains=["*"], routes=_routes(opts))],
        ),
        http_filters=[
            *([HttpFilter(name=EXT_AUTHZ_FILTER, typed_config=_pack(_ext_authz(opts))),
               HttpFilter(name=EXT_PROC_FILTER, typed_config=_pack(_ext_proc(opts)))] if opts.link_filters else []),
            HttpFilter(name="envoy.filters.http.router", typed_config=_pack(Router())),
        ],
        access_log=[_access_log(opts)] if opts.link_filters else [],
        tracing=_tracing(opts),
        request_timeout=dt.timedelta(seconds=60),
    )
    listener = Listener(
        name="ingress",
        address=_address(f"{opts.listen_address}:{opts.listen_port}"),
        filter_chains=[FilterChain(filters=[Filter(
            name="envoy.filters.network.http_connection_manager", typed_config=_pack(hcm))])],
    )
    listeners = [listener]
    if opts.health_port:
        listeners.append(_health_listener(opts))
    up = urlsplit(opts.upstream_url())
    if up.scheme not in ("http", "https") or not up.hostname:
        raise ValueError(f"upstream {opts.upstream_url()!r}: expected http(s)://host:port")
    up_port = up.port or (443 if up.scheme == "https" else 80)
    clusters = [
        *([_static_cluster(LINK_CLUSTER, [_address(a) for a in opts.link], 250, http2=True)]
          if opts.link_filters else []),
        _static_cluster(UPSTREAM_CLUSTER, [_address(f"{up.hostname}:{up_port}")], 1000, http2=False,
                        tls_sni=up.hostname if up.scheme == "https" else None),
    ]
    if opts.otlp_endpoint:
        clusters.append(_static_cluster(OTEL_CLUSTER, [_address(opts.otlp_endpoint)], 1000, http2=True))
    bootstrap = Bootstrap(
        admin=Admin(address=_address(f"{opts.admin_address}:{opts.admin_port}")),
        static_resources=BootstrapStaticResources(listeners=listeners, clusters=clusters),
    )
    out = bootstrap.to_dict()
    if opts.otlp_endpoint and opts.trace_flush_interval_ms:
        # A runtime layer is a free-form Struct: written in its JSON form.
        out["layeredRuntime"] = {"layers": [{"name": "tracing", "staticLayer": {
            "tracing.opentelemetry.flush_interval_ms": opts.trace_flush_interval_ms,
            "tracing.opentelemetry.min_flush_spans": 1}}]}
    return _explicit_failure_modes(out, opts.failure_mode == "open")


def _explicit_failure_modes(node: Any, fail_open: bool) -> Any:
    """Proto JSON omits false booleans; write the fail-open switches out so a reader sees them."""
    if isinstance(node, dict):
        kind = str(node.get("@type", ""))
        if kind.endswith(".ext_authz.v3.ExtAuthz") or kind.endswith(".ext_proc.v3.ExternalProcessor"):
            node.setdefault("failureModeAllow", fail_open)
        for value in node.values():
            _explicit_failure_modes(value, fail_open)
    elif isinstance(node, list):
        for value in node:
            _explicit_failure_modes(value, fail_open)
    return node


def render_yaml(bootstrap: dict[str, Any], header: str | None = None) -> str:
    text = yaml.safe_dump(bootstrap, sort_keys=False, default_flow_style=False)
    return (f"# {header}\n" if header else "") + text
