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
from envoy_data_plane.envoy.config.accesslog.v3 import (
    AccessLog,
    AccessLogFilter,
    AndFilter,
    ComparisonFilter,
    ComparisonFilterOp,
    ResponseFlagFilter,
    StatusCodeFilter,
)
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
    HeaderValue,
    Http1ProtocolOptions,
    Http2ProtocolOptions,
    HttpUri,
    KeepaliveSettings,
    Pipe,
    RuntimeUInt32,
    SocketAddress,
    TransportSocket,
)
from envoy_data_plane.envoy.config.core.v3 import HttpProtocolOptions as CommonHttpProtocolOptions
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.overload.v3 import (
    OverloadAction,
    OverloadManager,
    ResourceMonitor,
    ThresholdTrigger,
    Trigger,
)
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
from envoy_data_plane.envoy.extensions.common.tap.v3 import AdminConfig, CommonExtensionConfig
from envoy_data_plane.envoy.extensions.filters.http.ext_authz.v3 import (
    AuthorizationRequest,
    AuthorizationResponse,
    BufferSettings,
    CheckSettings,
    ExtAuthz,
    ExtAuthzPerRoute,
    HttpService,
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
from envoy_data_plane.envoy.extensions.filters.http.tap.v3 import Tap
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerTracing,
    HttpFilter,
    LocalReplyConfig,
    ResponseMapper,
)
from envoy_data_plane.envoy.extensions.resource_monitors.downstream_connections.v3 import (
    DownstreamConnectionsConfig,
)
from envoy_data_plane.envoy.extensions.resource_monitors.fixed_heap.v3 import FixedHeapConfig
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import UpstreamTlsContext
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions,
    HttpProtocolOptionsExplicitHttpConfig,
)
from envoy_data_plane.envoy.type.matcher.v3 import ListStringMatcher, RegexMatcher, StringMatcher
from envoy_data_plane.envoy.type.tracing.v3 import CustomTag
from envoy_data_plane.envoy.type.v3 import HttpStatus, Percent, StatusCode
from envoy_data_plane.google.protobuf import Any as AnyProto

from link.decision_metadata import DECISION_ID, LINK_PREFIX
from link.envoyconf.edge import client_header_limit, edge_fields
from link.httpauthz import wire
from link.settings import PRIMARY_GATEWAY_PORTS

LINK_CLUSTER = "stoa_link"
LINK_HTTP_CLUSTER = "stoa_link_http"
UPSTREAM_CLUSTER = "primary_gateway"
OTEL_CLUSTER = "otel_collector"
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
TAP_FILTER = "envoy.filters.http.tap"
SNAPSHOT_TAP_ID = "stoa_snapshots"  # Link attaches its tap to this id through Envoy's admin /tap
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
    # How ext_authz asks Link: "http" (http_service to link_http) or "grpc" (the Authorization service).
    authz_transport: str = "http"
    # The HTTP decision server(s): host:port or unix:/path; a server's workers share one socket.
    link_http: tuple[str, ...] = ("127.0.0.1:9190",)
    failure_mode: str = "closed"  # closed | open
    authz_timeout_ms: int = 200
    ext_proc_timeout_ms: int = 200
    ext_proc_prefixes: tuple[str, ...] = ()
    max_request_body_bytes: int = 65_536
    # Routes whose request body travels in the ext_authz check: (path prefix, max bytes); over = 413.
    authz_body_prefixes: tuple[tuple[str, int], ...] = ()
    # What the HTTP check carries (the pipeline reads these); see _authz_request_headers.
    api_key_header: str = "x-api-key"
    authz_request_headers: tuple[str, ...] = ()
    authz_upstream_headers: tuple[str, ...] = ()
    authz_client_headers: tuple[str, ...] = ()
    access_log_buffer_bytes: int = 16_384
    access_log_flush_ms: int = 200
    # The OTLP/gRPC collector, in Link's form (HOST:PORT or http:// plain, https:// TLS); enables tracing.
    otlp_endpoint: str | None = None
    service_name: str = "stoa-link-envoy"
    trace_sampling_percent: float = 100.0
    trace_flush_interval_ms: int = 0  # 0 = Envoy's default (5 s)
    extra_headers_to_log: tuple[str, ...] = field(default=("traceparent",))
    # False: a plain proxy with no Link filters (the benchmark's baseline).
    link_filters: bool = True
    # The tap filter error snapshots come from (idle until Link attaches a tap through the admin);
    # on by default like Link's own snapshots.capture=tap.
    snapshot_tap: bool = True
    # A listener answering /ready (200, or 503 while draining) for Kubernetes probes; 0 = none.
    # The admin interface stays on loopback, so kubelet cannot use it.
    health_port: int = 0
    # Overload manager, sized for a sidecar (see _overload_manager); 0 turns a monitor off.
    max_downstream_connections: int = 4_096
    max_heap_bytes: int = 192 << 20  # under the sidecar Envoy container's 256Mi memory limit
    # Headers Link owns: Envoy removes them from every client request before ext_authz (edge.py).
    identity_header_prefix: str = "x-stoa-"
    identity_headers: tuple[str, ...] = ("x-stoa-tenant", "x-stoa-consumer", "x-stoa-subject")
    # The Host an HTTP/1.0 request without one is forwarded with (a reserved name: no real host matches).
    http10_default_host: str = "http10.invalid"

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
    http = opts.authz_transport == "http"
    return ExtAuthz(
        grpc_service=None if http else _grpc(LINK_CLUSTER, opts.authz_timeout_ms),
        http_service=_http_service(opts) if http else None,
        allowed_headers=_authz_request_headers(opts) if http else None,
        # Only Envoy may set these (authorization_request.headers_to_add); a client's never reach Link.
        disallowed_headers=ListStringMatcher(patterns=[StringMatcher(prefix=wire.ENVOY_PREFIX)]) if http else None,
        transport_api_version=ApiVersion.V3,
        failure_mode_allow=fail_open,
        failure_mode_allow_header_add=fail_open,
        # An unreachable Link is an outage (503), never a 403 the client would take for a denial.
        status_on_error=HttpStatus(code=StatusCode.ServiceUnavailable),
        include_peer_certificate=True,
        stat_prefix="stoa_link",
    )


def _matchers(names: list[str]) -> ListStringMatcher:
    """Header name patterns: exact, or a prefix when the name ends in '-'; names a prefix covers are left out."""
    wanted = list(dict.fromkeys(n.lower() for n in names if n))
    prefixes = [n for n in wanted if n.endswith("-")]
    return ListStringMatcher(patterns=[
        StringMatcher(prefix=n) if n.endswith("-") else StringMatcher(exact=n)
        for n in wanted if n.endswith("-") or not any(n.startswith(p) for p in prefixes)])


def _authz_request_headers(opts: EnvoyOptions) -> ListStringMatcher:
    """The request headers an HTTP check carries: what the pipeline reads, nothing more.

    Envoy always adds Host, :method, :path, Content-Length and Authorization. Credentials (the
    API-key header), the body's type, the request id and trace context, a client certificate
    forwarded by a trusted proxy (XFCC), and client-sent identity headers (so the decision lists
    them for removal) are added here; ``server.authz_request_headers`` adds what policies read,
    and ``*`` there sends every header (what a Rego policy may read cannot be known in advance).
    """
    if "*" in opts.authz_request_headers:
        return ListStringMatcher(patterns=[StringMatcher(safe_regex=RegexMatcher(regex=".*"))])
    names = [opts.api_key_header, "content-type", "transfer-encoding", "x-request-id", "traceparent",
             "tracestate", "x-forwarded-client-cert", "x-forwarded-for", "user-agent", "accept",
             "x-envoy-auth-partial-body", *opts.identity_headers, opts.identity_header_prefix,
             *opts.authz_request_headers]
    return _matchers(names)


def _http_service(opts: EnvoyOptions) -> HttpService:
    upstream = [*opts.identity_headers, opts.identity_header_prefix, "x-request-id", "traceparent", "tracestate",
                *opts.authz_upstream_headers]
    # Headers for the client: what the pipeline sets (rate-limit state, challenges). On success
    # Envoy appends them (gRPC overwrites), so the request id is Envoy's own to set in the response
    # (always_set_request_id_in_response), never a second copy of an upstream's.
    client = ["ratelimit-", "retry-after", *opts.authz_client_headers]
    # A refusal is all for the client (Link's or the policy's headers, as on gRPC), except Link's
    # messages to Envoy (metadata, removals): every header name but those prefixes.
    denied = ListStringMatcher(patterns=[StringMatcher(safe_regex=RegexMatcher(
        regex=wire.not_prefixed_regex(wire.INTERNAL_HEADER_PREFIXES)))])
    envoy_headers = list(wire.ENVOY_HEADERS)
    if opts.otlp_endpoint:
        # Envoy's tracer puts its ext_authz span into the check's traceparent: the decision span's parent.
        envoy_headers.append((wire.ENVOY_TRACED, "1"))
    return HttpService(
        server_uri=HttpUri(uri="http://stoa-link", cluster=LINK_HTTP_CLUSTER, timeout=_ms(opts.authz_timeout_ms)),
        path_prefix=wire.CHECK_PREFIX,
        # What only Envoy knows (peer address, TLS peer, scheme); under a prefix no client header reaches Link by.
        authorization_request=AuthorizationRequest(
            headers_to_add=[HeaderValue(key=k, value=v) for k, v in envoy_headers]),
        authorization_response=AuthorizationResponse(
            allowed_upstream_headers=_matchers(upstream),
            allowed_client_headers=denied,
            allowed_client_headers_on_success=_matchers(client),
            # Link's own keys by their names (the same keys as on gRPC), the policy's under a prefix.
            dynamic_metadata_from_headers=ListStringMatcher(patterns=[
                StringMatcher(prefix=LINK_PREFIX), StringMatcher(exact=DECISION_ID),
                StringMatcher(prefix=wire.META_PREFIX)]),
        ),
    )


def _local_reply(opts: EnvoyOptions, edge: LocalReplyConfig | None) -> LocalReplyConfig | None:
    """Link's own 5xx refusals arrive as reserved 49x denials (any 5xx would count as Link failing);
    ext_authz's denials are local replies, so these mappers give the client the intended 5xx, with
    Link's headers and JSON body unchanged. UAEX (ext_authz denied) keeps other local replies out."""
    if not opts.link_filters or opts.authz_transport != "http":
        return edge
    mappers = []
    for reserved in wire.RESERVED_STATUSES:
        mappers.append(ResponseMapper(
            filter=AccessLogFilter(and_filter=AndFilter(filters=[
                AccessLogFilter(status_code_filter=StatusCodeFilter(comparison=ComparisonFilter(
                    op=ComparisonFilterOp.EQ,
                    value=RuntimeUInt32(default_value=reserved, runtime_key=f"stoa_link.reserved_{reserved}")))),
                AccessLogFilter(response_flag_filter=ResponseFlagFilter(flags=["UAEX"])),
            ])),
            status_code=wire.client_status(reserved),
        ))
    # Ours first (they match only ext_authz's reserved statuses); then the edge's, for Envoy's own replies.
    if edge is not None:
        return LocalReplyConfig(mappers=[*mappers, *edge.mappers], body_format=edge.body_format)
    return LocalReplyConfig(mappers=mappers)


def _link_http_cluster(opts: EnvoyOptions) -> Cluster:
    """HTTP/1.1 to the decision server: one endpoint (workers share its socket), many pooled connections."""
    cluster = _static_cluster(LINK_HTTP_CLUSTER, [_address(a) for a in opts.link_http], 250, http2=False)
    # Envoy closes idle pooled connections before Link does (http_idle_timeout_s), so it never
    # sends a check on a connection Link is closing.
    cluster.typed_extension_protocol_options = {_H2_OPTIONS: _pack(HttpProtocolOptions(
        # Room for a decision's headers (metadata included, capped by Link well below this).
        common_http_protocol_options=CommonHttpProtocolOptions(idle_timeout=dt.timedelta(seconds=60),
                                                               max_headers_count=256, max_response_headers_kb=128),
        explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(http_protocol_options=Http1ProtocolOptions())))}
    return cluster


def _ext_proc(opts: EnvoyOptions) -> ExternalProcessor:
    return ExternalProcessor(
        grpc_service=_grpc(LINK_CLUSTER, opts.ext_proc_timeout_ms),
        failure_mode_allow=opts.failure_mode == "open",
        message_timeout=_ms(opts.ext_proc_timeout_ms),
        processing_mode=_body_mode(),
        # Link answers a response's headers with response_body_mode NONE unless it snapshots that
        # response: the body then streams past ext_proc. Buffering it for nothing cost a round trip,
        # and a response larger than the stream's buffer limit (ext_authz lowers it to a contract's
        # body limit) could stall: Envoy sent the part that fit and never the end of the stream.
        allow_mode_override=True,
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
        response_body_mode=ProcessingModeBodySendMode.STREAMED,
        request_trailer_mode=ProcessingModeHeaderSendMode.SKIP,
        response_trailer_mode=ProcessingModeHeaderSendMode.SKIP,
    )


def _snapshot_tap_filters(opts: EnvoyOptions) -> list[HttpFilter]:
    """The tap filter, last before the router: it sees the request as Link let it through.

    Nothing is tapped until Link POSTs a tap (match: error status on opted-in paths) to the admin
    ``/tap`` endpoint. A refusal Link decides is a local reply of ext_authz: a tap matching on the
    status alone (tenant opt-ins) streams its response without the request, and Link skips that
    trace (it snapshots its own refusals); a tap matching opted-in paths never streams it.
    """
    if not (opts.snapshot_tap and opts.link_filters):
        return []
    tap = Tap(common_config=CommonExtensionConfig(admin_config=AdminConfig(config_id=SNAPSHOT_TAP_ID)),
              record_headers_received_time=True)
    return [HttpFilter(name=TAP_FILTER, typed_config=_pack(tap))]


def _routes(opts: EnvoyOptions) -> list[Route]:
    action = RouteAction(cluster=UPSTREAM_CLUSTER, timeout=dt.timedelta(seconds=30))
    if not opts.link_filters:
        return [Route(name="default", match=RouteMatch(prefix="/"), route=action)]
    limits = dict(opts.authz_body_prefixes)
    prefixes = dict.fromkeys([*limits, *opts.ext_proc_prefixes])
    routes: list[Route] = []
    # Longest prefix first: Envoy takes the first route that matches.
    for prefix in sorted(prefixes, key=len, reverse=True):
        per_filter = {EXT_AUTHZ_FILTER: _pack(_body_check_settings(limits.get(prefix), opts))}
        if prefix in opts.ext_proc_prefixes:
            per_filter[EXT_PROC_FILTER] = _pack(ExtProcPerRoute(overrides=ExtProcOverrides(
                processing_mode=_body_mode())))
        else:
            per_filter[EXT_PROC_FILTER] = _pack(ExtProcPerRoute(disabled=True))
        routes.append(Route(name=f"body:{prefix}", match=RouteMatch(prefix=prefix), route=action,
                            typed_per_filter_config=per_filter))
    routes.append(Route(
        name="default",
        match=RouteMatch(prefix="/"),
        route=action,
        # Everything else pays only the unary ext_authz check.
        typed_per_filter_config={EXT_PROC_FILTER: _pack(ExtProcPerRoute(disabled=True))},
    ))
    return routes


def _body_check_settings(limit: int | None, opts: EnvoyOptions) -> ExtAuthzPerRoute:
    """The request body travels in the check (one hop, either transport).

    A contract-validated route buffers the whole body up to the contract's own limit and
    ``allow_partial_message: false`` makes Envoy answer 413 beyond it: no body is ever passed
    unchecked. A route that only wants ext_proc (snapshots) lets ext_authz see a bounded excerpt.
    """
    if limit is not None:
        body = BufferSettings(max_request_bytes=max(1, limit), allow_partial_message=False, pack_as_bytes=True)
    else:
        body = BufferSettings(max_request_bytes=opts.max_request_body_bytes, allow_partial_message=True,
                              pack_as_bytes=True)
    return ExtAuthzPerRoute(check_settings=CheckSettings(with_request_body=body))


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


def _otel_cluster(endpoint: str) -> Cluster:
    """The collector's cluster: the same endpoint forms as Link's exporter (https:// adds TLS with SNI)."""
    from link.telemetry.endpoint import parse_otlp_endpoint

    target = parse_otlp_endpoint(endpoint)
    return _static_cluster(OTEL_CLUSTER, [_address(target.address)], 1000, http2=True,
                           tls_sni=target.host if target.tls else None)


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
        # Probes still get an answer when clients hold every connection: a saturated proxy is
        # not a dead one, and kubelet must not restart it for that.
        ignore_global_conn_limit=True,
        filter_chains=[FilterChain(filters=[Filter(
            name="envoy.filters.network.http_connection_manager", typed_config=_pack(hcm))])],
    )


# Heap thresholds (fractions of max_heap_bytes): return freed memory to the OS first, then stop
# keeping idle client connections, and only near the limit refuse new requests (503) instead of
# being OOM-killed with every request in flight.
_HEAP_ACTIONS = (
    ("envoy.overload_actions.shrink_heap", 0.90),
    ("envoy.overload_actions.disable_http_keepalive", 0.95),
    ("envoy.overload_actions.stop_accepting_requests", 0.98),
)
_HEAP_MONITOR = "envoy.resource_monitors.fixed_heap"
_CONNECTIONS_MONITOR = "envoy.resource_monitors.global_downstream_max_connections"


def _overload_manager(opts: EnvoyOptions) -> OverloadManager | None:
    """Envoy's overload manager: a global cap on client connections and a heap watch.

    The connection cap (``max_downstream_connections``) is enforced by Envoy itself once
    reached (new connections are closed at accept); the health listener is exempt. The heap
    monitor (``max_heap_bytes``) drives the actions of ``_HEAP_ACTIONS``.
    """
    monitors: list[ResourceMonitor] = []
    actions: list[OverloadAction] = []
    if opts.max_downstream_connections:
        monitors.append(ResourceMonitor(name=_CONNECTIONS_MONITOR, typed_config=_pack(DownstreamConnectionsConfig(
            max_active_downstream_connections=opts.max_downstream_connections))))
    if opts.max_heap_bytes:
        monitors.append(ResourceMonitor(name=_HEAP_MONITOR, typed_config=_pack(FixedHeapConfig(
            max_heap_size_bytes=opts.max_heap_bytes))))
        actions = [OverloadAction(name=name, triggers=[Trigger(name=_HEAP_MONITOR,
                                                               threshold=ThresholdTrigger(value=value))])
                   for name, value in _HEAP_ACTIONS]
    if not monitors:
        return None
    return OverloadManager(refresh_interval=_ms(250), resource_monitors=monitors, actions=actions)


def build_bootstrap(opts: EnvoyOptions) -> dict[str, Any]:
    """The bootstrap as a plain dict (Envoy's JSON/YAML form)."""
    edge = edge_fields(opts.identity_header_prefix, opts.identity_headers, opts.link_filters,
                       opts.http10_default_host)
    hcm = HttpConnectionManager(
        stat_prefix="ingress",
        route_config=RouteConfiguration(
            name="primary_gateway",
            virtual_hosts=[VirtualHost(name="all", domains=["*"], routes=_routes(opts))],
        ),
        http_filters=[
            *([client_header_limit()] if opts.link_filters else []),
            *([HttpFilter(name=EXT_AUTHZ_FILTER, typed_config=_pack(_ext_authz(opts))),
               # Off unless a route enables it: Envoy's own local replies (431, 400) have no route, and an
               # ext_proc stream opened for one is cut with the connection, leaving the client no answer.
               HttpFilter(name=EXT_PROC_FILTER, typed_config=_pack(_ext_proc(opts)), disabled=True)]
             if opts.link_filters else []),
            *_snapshot_tap_filters(opts),
            HttpFilter(name="envoy.filters.http.router", typed_config=_pack(Router())),
        ],
        access_log=[_access_log(opts)] if opts.link_filters else [],
        tracing=_tracing(opts),
        always_set_request_id_in_response=opts.link_filters and opts.authz_transport == "http",
        request_timeout=dt.timedelta(seconds=60),
        **{**edge, "local_reply_config": _local_reply(opts, edge.get("local_reply_config"))},
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
        *([_link_http_cluster(opts)] if opts.link_filters and opts.authz_transport == "http" else []),
        _static_cluster(UPSTREAM_CLUSTER, [_address(f"{up.hostname}:{up_port}")], 1000, http2=False,
                        tls_sni=up.hostname if up.scheme == "https" else None),
    ]
    if opts.otlp_endpoint:
        clusters.append(_otel_cluster(opts.otlp_endpoint))
    bootstrap = Bootstrap(
        # Loopback-only admin stays usable at the connection cap (stats, draining).
        admin=Admin(address=_address(f"{opts.admin_address}:{opts.admin_port}"), ignore_global_conn_limit=True),
        static_resources=BootstrapStaticResources(listeners=listeners, clusters=clusters),
        overload_manager=_overload_manager(opts),
    )
    out = bootstrap.to_dict()
    if opts.otlp_endpoint and opts.trace_flush_interval_ms:
        # A runtime layer is a free-form Struct: written in its JSON form.
        out["layeredRuntime"] = {"layers": [{"name": "tracing", "staticLayer": {
            "tracing.opentelemetry.flush_interval_ms": opts.trace_flush_interval_ms,
            "tracing.opentelemetry.min_flush_spans": 1}}]}
    _add_runtime_layer(out, _http_authz_runtime(opts))
    return _explicit_failure_modes(out, opts.failure_mode == "open")


def _http_authz_runtime(opts: EnvoyOptions) -> dict[str, Any] | None:
    """The refusal header matcher (every name but Link's internal ones) is a larger RE2 program
    than Envoy's default bound of 100; it is compiled once at start-up."""
    if not opts.link_filters or opts.authz_transport != "http":
        return None
    return {"name": "http_authz", "staticLayer": {"re2.max_program_size.error_level": 1_000,
                                                  "re2.max_program_size.warn_level": 1_000}}


def _add_runtime_layer(out: dict[str, Any], layer: dict[str, Any] | None) -> None:
    if layer is not None:
        out.setdefault("layeredRuntime", {"layers": []})["layers"].append(layer)


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
