"""All of STOA Link's settings, in one place.

Precedence: command-line flags > environment > YAML file (``--config``) > defaults.

Every key has a dotted name (``metering.topic``). The environment spells it
``STOA_METERING_TOPIC``; the platform's own variables (``GATEWAY_MODE``,
``KEYCLOAK_URL``, ``OPA_ENABLED`` …) are accepted too. A flag spells it
``--metering-topic`` (or ``--set metering.topic=…``); the seed's short flags
(``--mode``, ``--primary-gateway``, ``--metering-enabled``) work as documented.

The layers are pydantic-settings sources (``link.settings_sources``); this module
holds the schema. Anything wrong stops start-up with :class:`ConfigError`, which
names the key and the reason; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "ConfigError",
    "Settings",
    "load_settings",
]

Mode = Literal["sidecar", "edge-mcp", "proxy", "shadow"]
PrimaryGateway = Literal["kong", "gravitee", "webmethods", "agentgateway"]
CredentialName = Literal["jwt", "api_key", "mtls"]

# The port each gateway listens on by default; Envoy forwards to it on the pod's loopback.
PRIMARY_GATEWAY_PORTS: dict[str, int] = {"kong": 8000, "gravitee": 8082, "webmethods": 5555, "agentgateway": 3000}


class ConfigError(Exception):
    """A setting is wrong; ``key`` names it."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return value


def _http_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected http(s)://host[:port], got {value!r}")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise ValueError(f"bad port in {value!r}") from None
    return value


def _rate(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    from link.rates import parse_rate  # local import keeps settings import-light

    parse_rate(value)
    return value


class ServerSettings(_Section):
    """The servers Envoy talks to (HTTP decisions, gRPC), and the admin HTTP server."""

    authz_transport: Literal["http", "grpc"] = "http"  # how Envoy's ext_authz asks: http_service or gRPC
    http_address: str = "127.0.0.1:9190"  # HTTP decision server (ext_authz http_service), TCP
    http_uds: str | None = None  # serve on this Unix socket instead of TCP, e.g. /var/run/stoa/authz.sock
    http_max_header_bytes: int = Field(default=32_768, ge=1_024, le=1 << 20)  # request line + headers; more: 431
    http_header_timeout_s: float = Field(default=10.0, gt=0, le=300)  # a request's headers must arrive in this
    http_idle_timeout_s: float = Field(default=300.0, gt=0)  # keep-alive; above Envoy's own pool idle timeout
    http_max_connections: int = Field(default=4_096, ge=1)  # per process; beyond it new connections are closed
    # HTTP transport. Names: exact, or a prefix ending in '-'.
    authz_request_headers: list[str] = []  # sent beyond the pipeline's; "*" all; empty: all if policy.enabled
    authz_upstream_headers: list[str] = []  # more names an allow may set upstream (x-stoa-* always)
    authz_client_headers: list[str] = []  # more names an allow may send the client (ratelimit-* always)
    grpc_address: str = "127.0.0.1:9191"
    grpc_uds: str | None = None  # e.g. /var/run/stoa/link.sock, served in addition
    admin_address: str = "127.0.0.1:8081"
    # Envoy pings every keepalive_time; the server must permit at least that rate.
    keepalive_time_ms: int = Field(default=30_000, ge=1_000)
    keepalive_min_ping_interval_ms: int = Field(default=5_000, ge=100)
    max_concurrent_streams: int = Field(default=1_000, ge=1)
    shutdown_grace_s: float = Field(default=10.0, ge=0, le=300)
    # Processes: gRPC ones each on its own port after grpc_address's (Envoy balances across them);
    # the HTTP decision sockets are shared by all of them.
    workers: int = Field(default=1, ge=1, le=64)

    _check_grpc = field_validator("grpc_address", "admin_address", "http_address")(lambda cls, v: _address(v))


class BodyTransformSettings(_Section):
    """JSON body fields changed on the way (dotted paths: ``customer.email``); proxy mode."""

    add: dict[str, Any] = Field(default_factory=dict)  # path -> value (set, replacing what is there)
    remove: list[str] = Field(default_factory=list)
    rename: dict[str, str] = Field(default_factory=dict)  # old path -> new path


class TransformSettings(_Section):
    """Request/response changes declared on a route (proxy mode); applied by Envoy, bodies by Link."""

    request_headers_add: dict[str, str] = Field(default_factory=dict)  # set (overwrite)
    request_headers_remove: list[str] = Field(default_factory=list)
    request_headers_rename: dict[str, str] = Field(default_factory=dict)  # old -> new
    response_headers_add: dict[str, str] = Field(default_factory=dict)
    response_headers_remove: list[str] = Field(default_factory=list)
    response_headers_rename: dict[str, str] = Field(default_factory=dict)
    path_prefix_rewrite: str | None = None  # the route's prefix becomes this
    path_template_rewrite: str | None = None  # with a template route: /v2/items/{id}
    query_add: dict[str, str] = Field(default_factory=dict)  # set (overwrite)
    query_remove: list[str] = Field(default_factory=list)
    request_body: BodyTransformSettings | None = None
    response_body: BodyTransformSettings | None = None

    @model_validator(mode="after")
    def _one_rewrite(self) -> TransformSettings:
        if self.path_prefix_rewrite is not None and self.path_template_rewrite is not None:
            raise ValueError("give at most one of path_prefix_rewrite or path_template_rewrite")
        return self


class RouteSettings(_Section):
    """One API route of the data plane (matched by path prefix or template)."""

    name: str
    prefix: str | None = None
    template: str | None = None  # /invoices/{id}
    methods: list[str] = Field(default_factory=list)  # empty = any
    tenant: str | None = None
    api: str | None = None
    anonymous: bool = False
    credentials: list[CredentialName] = Field(default_factory=list)  # empty = identity.default_credentials
    required_scopes: list[str] = Field(default_factory=list)
    rate_limit: str | None = None
    contract: str | None = None
    snapshots: bool = False
    # Ask Envoy's ext_proc for this route's bodies (contracts, snapshots).
    ext_proc: bool = False
    # Credentials are checked when present; a caller without any goes on as the anonymous principal.
    optional_identity: bool = False
    upstream: str | None = None  # proxy mode: this route's upstream URL (default proxy.upstream)
    transform: TransformSettings | None = None  # proxy mode

    _check_rate = field_validator("rate_limit")(lambda cls, v: _rate(v))
    _check_upstream = field_validator("upstream")(lambda cls, v: v if v is None else _http_url(v))

    @model_validator(mode="after")
    def _one_matcher(self) -> RouteSettings:
        if (self.prefix is None) == (self.template is None):
            raise ValueError("give exactly one of prefix or template")
        path = self.prefix if self.prefix is not None else self.template
        if not path or not path.startswith("/"):
            raise ValueError("prefix/template must start with '/'")
        t = self.transform
        if t is not None and t.path_template_rewrite is not None and self.template is None:
            raise ValueError("transform.path_template_rewrite: needs a template route")
        return self


class IssuerSettings(_Section):
    issuer: str
    discovery_url: str | None = None  # default: {issuer}/.well-known/openid-configuration
    jwks_uri: str | None = None  # skips discovery when set
    audiences: list[str] = Field(default_factory=list)


class IdentitySettings(_Section):
    keycloak_url: str | None = None
    keycloak_realm: str = "stoa"
    issuers: list[IssuerSettings] = Field(default_factory=list)
    audiences: list[str] = Field(default_factory=list)  # accepted `aud` (or `azp`) values; empty = any
    check_azp: bool = True
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
    )
    leeway_s: int = Field(default=30, ge=0, le=300)
    max_token_bytes: int = Field(default=8_192, ge=256, le=65_536)
    jwks_ttl_s: int = Field(default=300, ge=1)
    jwks_min_refresh_interval_s: float = Field(default=10.0, ge=0)
    jwks_stale_max_s: int = Field(default=3_600, ge=0)
    jwks_fetch_timeout_s: float = Field(default=2.0, gt=0, le=30)
    jwks_miss_wait_ms: int = Field(default=50, ge=0, le=1_000)  # a request's wait for a key fetch, then 401
    required_claims: list[str] = Field(default_factory=lambda: ["iss", "exp", "sub"])
    tenant_claim: str = "tenant"  # a dotted path reaches nested claims
    consumer_tenants: dict[str, str] = Field(default_factory=dict)
    default_tenant: str | None = None
    require_tenant: bool = False  # refuse callers whose tenant cannot be found
    token_cache_size: int = Field(default=10_000, ge=0)
    default_credentials: list[CredentialName] = ["jwt", "api_key"]  # pydantic copies list defaults
    api_key_header: str = "x-api-key"
    api_keys_file: str | None = None  # YAML/JSON file or a mounted Secret directory
    api_keys_reload_s: float = Field(default=5.0, gt=0)
    mtls_trust_xfcc: bool = False
    header_tenant: str = "x-stoa-tenant"
    header_consumer: str = "x-stoa-consumer"
    header_subject: str = "x-stoa-subject"
    strip_header_prefix: str = "x-stoa-"

    @field_validator("algorithms")
    @classmethod
    def _safe_algorithms(cls, v: list[str]) -> list[str]:
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
        bad = [a for a in v if a not in allowed]
        if bad:
            raise ValueError(f"not allowed: {bad}; only asymmetric algorithms ({sorted(allowed)})")
        return v


class PolicySettings(_Section):
    enabled: bool = True
    engine: Literal["embedded", "remote"] = "embedded"
    paths: list[str] = Field(default_factory=list)  # .rego files, directories, bundles (.tar.gz)
    query: str = "data.envoy.authz.allow"
    reload_interval_s: float = Field(default=2.0, gt=0)
    remote_url: str | None = None  # e.g. http://127.0.0.1:8181/v1/data/envoy/authz/allow
    remote_timeout_ms: int = Field(default=100, ge=1, le=10_000)
    failure_mode: Literal["closed", "open"] = "closed"
    decision_log: str | None = None  # a file path, or "stdout"
    # Header, query and body keys whose values the decision log never shows.
    decision_log_redact: list[str] = Field(
        default_factory=lambda: ["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
                                 "x-auth-token", "password", "secret", "token", "access_token", "refresh_token",
                                 "client_secret", "api_key", "apikey"]
    )
    dry_run: bool = False
    # Decisions of deterministic policies are cached by the input they read; 0 turns the cache off.
    cache_size: int = Field(default=10_000, ge=0, le=1_000_000)

    @field_validator("query")
    @classmethod
    def _query_is_a_data_path(cls, v: str) -> str:
        import re  # local: only this validator needs it

        if not re.fullmatch(r"data(\.[A-Za-z_][A-Za-z0-9_]*)+", v):
            raise ValueError(f"expected a rule path such as data.envoy.authz.allow, got {v!r}")
        return v

    @model_validator(mode="after")
    def _remote_needs_url(self) -> PolicySettings:
        if self.enabled and self.engine == "remote" and not self.remote_url:
            raise ValueError("remote_url: engine 'remote' needs a URL")
        if self.remote_url and not self.remote_url.startswith(("http://", "https://")):
            raise ValueError(f"remote_url must start with http:// or https://, got {self.remote_url!r}")
        return self


class RateLimitSettings(_Section):
    enabled: bool = True
    backend: Literal["local", "redis"] = "local"
    redis_url: str | None = None
    # A guard against a frozen Redis, not a latency target: a timeout opens the circuit, so a frozen Redis
    # costs only the checks in flight, while a tight value turns scheduler lag on a loaded node into
    # failures (20 ms: 16 % of checks on a loaded 2-core node). 100 ms = half of server.authz_timeout_ms.
    redis_timeout_ms: int = Field(default=100, ge=1, le=5_000)  # per check; half the ext_authz budget
    redis_failure_mode: Literal["local", "allow", "deny"] = "local"
    tenant_default: str | None = None  # e.g. "1000/min"
    consumer_default: str | None = None
    burst_factor: float = Field(default=1.0, ge=1.0, le=100.0)
    tenants: dict[str, str] = Field(default_factory=dict)  # tenant -> rate
    consumers: dict[str, str] = Field(default_factory=dict)  # consumer -> rate (overrides consumer_default)
    # After a Redis failure, skip Redis (failure mode applies) and probe it in the background this often.
    redis_retry_s: float = Field(default=1.0, gt=0, le=60)
    redis_key_prefix: str = "stoa:rl:"
    # In-process buckets kept at most; full (idle) buckets are dropped first.
    local_max_buckets: int = Field(default=100_000, ge=100)

    _check_rates = field_validator("tenant_default", "consumer_default")(lambda cls, v: _rate(v))

    @field_validator("tenants", "consumers")
    @classmethod
    def _check_tenant_rates(cls, v: dict[str, str]) -> dict[str, str]:
        for name, rate in v.items():
            try:
                _rate(rate)
            except ValueError as exc:
                raise ValueError(f"{name!r}: {exc}") from None
        return v

    @model_validator(mode="after")
    def _redis_needs_url(self) -> RateLimitSettings:
        if self.enabled and self.backend == "redis" and not self.redis_url:
            raise ValueError("redis_url: backend 'redis' needs a Redis URL")
        return self


class ContractSettings(_Section):
    enabled: bool = True
    paths: list[str] = Field(default_factory=list)  # UAC files (YAML/JSON) or directories of them
    mode: Literal["enforce", "observe"] = "enforce"
    max_body_bytes: int = Field(default=1_048_576, ge=0)
    # Requests on a route bound to a contract that match none of its endpoints: refused (404/405) or passed.
    reject_unknown_paths: bool = True


class MeteringSettings(_Section):
    enabled: bool = True
    bootstrap_servers: str | None = None  # KAFKA_BOOTSTRAP_SERVERS, comma-separated
    topic: str = "stoa.metering"
    format: Literal["json", "protobuf"] = "json"
    queue_max: int = Field(default=100_000, ge=100)
    batch_max: int = Field(default=1_000, ge=1)
    linger_ms: int = Field(default=50, ge=0)
    # zstd: about 50x less CPU per event than the Kafka client's gzip (always level 9), at a better ratio (ADR 0029).
    compression: Literal["gzip", "none", "lz4", "zstd", "snappy"] = "zstd"
    spool_dir: str = "var/spool"
    spool_max_bytes: int = Field(default=1 << 30, ge=1 << 16)
    spool_fsync: Literal["always", "interval", "never"] = "interval"
    spool_fsync_interval_ms: int = Field(default=200, ge=1)
    send_timeout_s: float = Field(default=5.0, gt=0)
    spool_segment_bytes: int = Field(default=16 << 20, ge=1 << 12)  # one spool file; rolls after this
    in_flight_batches: int = Field(default=4, ge=1, le=64)  # batches awaiting broker acks at once
    # Kafka idempotent producer; off by default because the tansu test broker does not support it.
    idempotence: bool = False
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @model_validator(mode="after")
    def _sasl_complete(self) -> MeteringSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError("sasl_mechanism: SASL needs sasl_mechanism, sasl_username and sasl_password")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_keyfile: ssl_certfile and ssl_keyfile go together")
        return self


_DEFAULT_MASK_KEYS = (
    # passwords and passphrases
    "password", "passwd", "pwd", "passphrase", "passcode",
    # one-time and card codes
    "pin", "otp", "totp", "mfa_code", "cvv", "cvv2", "cvc", "cvc2", "security_code",
    # keys, tokens, sessions
    "secret", "token", "api_key", "apikey", "access_token", "refresh_token", "id_token", "client_secret",
    "private_key", "privatekey", "signing_key", "credential", "credentials", "authorization", "auth",
    "session", "session_id", "sessionid", "sid", "cookie", "jwt", "bearer",
    # account and identity numbers
    "credit_card", "card_number", "cardnumber", "pan", "iban", "account_number", "ssn", "social_security",
)


class SnapshotSettings(_Section):
    enabled: bool = True
    capture_5xx: bool = True
    capture_4xx: bool = False
    tenants: list[str] = Field(default_factory=list)  # opt-in tenants ("*" = all)
    db_path: str = "var/snapshots.db"
    retention_days: float = Field(default=7, gt=0)
    max_bytes: int = Field(default=256 << 20, ge=1 << 16)
    body_excerpt_bytes: int = Field(default=4_096, ge=0, le=1 << 20)
    topic: str = "stoa.errors"
    admin_token: str | None = None
    mask_keys: list[str] = Field(default_factory=lambda: list(_DEFAULT_MASK_KEYS))  # matched by word: newPassword
    purge_interval_s: float = Field(default=60, gt=0)
    queue_max: int = Field(default=1_000, ge=1)  # captured exchanges waiting for the writer; more are dropped
    publish_queue_max: int = Field(default=1_000, ge=1)  # snapshots waiting for Kafka; more are not published
    # An error storm yields thousands of alike snapshots; masking them would compete with the request path.
    max_per_second: float = Field(default=20.0, gt=0)
    # How upstream failures are captured: Envoy's tap filter streamed from its admin (off the request
    # path), or ext_proc on the opted-in routes (one stream per request, 2xx included).
    capture: Literal["tap", "ext_proc"] = "tap"
    envoy_admin_url: str = "http://127.0.0.1:9901"  # where Link attaches the tap (Envoy's admin, loopback)
    tap_subscribe: bool = True  # false in extra worker processes: one tap per Envoy

    @field_validator("retention_days")
    @classmethod
    def _max_retention(cls, v: float) -> float:
        if v > 30:
            raise ValueError("retention is at most 30 days")
        return v


class TracingSettings(_Section):
    enabled: bool = False
    # The same form for Envoy's tracer; OTEL_EXPORTER_OTLP_ENDPOINT is read the same way when this is unset.
    otlp_endpoint: str | None = None  # HOST:PORT or http://HOST:PORT = plain gRPC, https://HOST:PORT = TLS
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    service_name: str = "stoa-link"
    export_timeout_s: float = Field(default=10.0, gt=0, le=60)  # one export to the collector, retries included

    @model_validator(mode="after")
    def _needs_endpoint(self) -> TracingSettings:
        if self.enabled and not (self.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
            raise ValueError("otlp_endpoint: tracing needs an OTLP endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT)")
        if self.otlp_endpoint:
            from link.telemetry.endpoint import parse_otlp_endpoint  # local import keeps settings import-light

            try:
                parse_otlp_endpoint(self.otlp_endpoint)
            except ValueError as exc:
                raise ValueError(f"otlp_endpoint: {exc}") from None
        return self


class ControlPlaneSettings(_Section):
    url: str | None = None  # off when unset
    gateway_key: str | None = None
    gateway_key_file: str | None = None  # a mounted Secret
    instance_name: str | None = None  # default: POD_NAME, else hostname
    environment: str = "development"
    timeout_s: float = Field(default=5.0, gt=0)
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    # The server sets the heartbeat interval; this floor guards against a zero or tiny value.
    heartbeat_interval_min_s: float = Field(default=1.0, gt=0)
    ca_file: str | None = None  # CA bundle for a control plane behind a private CA
    # Several workers in one pod: the registering process writes the gateway id here, the others
    # (no url) read it, so a pod registers once and every event carries the same gateway_id.
    gateway_id_file: str | None = None  # set by `serve` for its workers; rarely set by hand

    @model_validator(mode="after")
    def _backoff_order(self) -> ControlPlaneSettings:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        return self


class EventsSettings(_Section):
    """Kubernetes Events on Link's pod when readiness changes (``kubectl describe pod`` says why)."""

    # auto: on in a pod (POD_NAME/POD_NAMESPACE set, and a service account or registry.kubeconfig)
    enabled: Literal["auto", "on", "off"] = "auto"
    interval_s: float = Field(default=2.0, gt=0)  # how often readiness is looked at
    settle_s: float = Field(default=5.0, ge=0)  # how long a not-ready state lasts before it is reported
    timeout_s: float = Field(default=5.0, gt=0)  # one write to the apiserver


class RegistrySettings(_Section):
    source: Literal["files", "kubernetes", "none"] = "files"
    path: str | None = None  # directory of Tool/ToolSet YAML manifests
    namespaces: list[str] = Field(default_factory=list)  # empty = all namespaces
    reload_interval_s: float = Field(default=2.0, gt=0)
    kubeconfig: str | None = None

    @model_validator(mode="after")
    def _files_need_path(self) -> RegistrySettings:
        if self.source == "files" and self.path is not None and not self.path:
            raise ValueError("path: is empty")
        return self


_LOOPBACK_HOST_PATTERNS = ("127.0.0.1:*", "localhost:*", "[::1]:*")


def host_is_checked(mcp: McpSettings) -> bool:
    """Whether the MCP server compares Host with ``mcp.allowed_hosts``, so a Host header names one of ours.

    Off loopback with the loopback-only default list, Host is not checked (see mcp_server.security).
    """
    if not mcp.dns_rebinding_protection or "*" in mcp.allowed_hosts:
        return False
    return mcp.host in ("127.0.0.1", "localhost", "::1") or tuple(mcp.allowed_hosts) != _LOOPBACK_HOST_PATTERNS


class McpSettings(_Section):
    enabled: bool = True  # sidecar: `serve` also serves MCP, in the same process (false: no MCP port)
    host: str = "127.0.0.1"
    port: int = Field(default=3001, ge=0, le=65535)  # GATEWAY_PORT
    public_tenants: list[str] = Field(default_factory=list)  # tenants whose tools need no token
    allowed_hosts: list[str] = Field(default_factory=lambda: list(_LOOPBACK_HOST_PATTERNS))
    # Browser origins allowed to call the MCP server (exact, case-insensitive; "base:*" = any port).
    # Default none: a request carrying another Origin than the server's own is refused 403, so no
    # other local web page can drive it (same-origin counts only while Host is checked).
    allowed_origins: list[str] = Field(default_factory=list)
    # This MCP server's URL as OAuth resource (RFC 8707/9728): bearer tokens must name it in `aud`.
    # Unset: derived from the checked Host header; required when Host is not checked (off loopback).
    resource_url: str | None = None
    required_scopes: list[str] = Field(default_factory=list)
    # OAuth authorization servers named in the resource metadata; default: the Keycloak realm.
    authorization_servers: list[str] = Field(default_factory=list)
    dns_rebinding_protection: bool = True  # check Host and Origin against allowed_hosts/allowed_origins
    secrets_dir: str | None = None  # one file per Tool secretRef (a directory of files for mTLS)
    # Streamable HTTP answers POSTs with JSON (cheaper; tool calls send no per-request notifications);
    # false answers with an SSE stream. Server notifications use the session's GET stream either way.
    json_response: bool = True
    # With json_response: plain local tools/call POSTs are answered without the SDK's per-message
    # dispatch (same answer, about half the CPU; mcp_server/direct.py). Off: every POST through the SDK.
    direct_tool_calls: bool = True
    session_idle_timeout_s: float = Field(default=1800.0, gt=0)
    # Resumable Streamable HTTP: events kept per session / in total / how long, so a client reconnecting
    # with Last-Event-ID gets what it missed (0 events per session: no event store, no resumption).
    event_store_per_session: int = Field(default=256, ge=0)
    event_store_total: int = Field(default=20_000, ge=1)
    event_store_ttl_s: float = Field(default=300.0, gt=0)
    sse_retry_ms: int | None = Field(default=1000, ge=0)  # the SSE `retry` hint sent with each priming event
    # Close a tools/call's SSE stream once the call has run this long (the client polls back with
    # Last-Event-ID, SEP-1699); 0 keeps the stream open until the result.
    sse_poll_after_s: float = Field(default=0.0, ge=0)
    max_sessions: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=4 << 20, ge=1024)  # every MCP entry: Streamable HTTP, SSE, REST
    body_timeout_s: float = Field(default=30.0, gt=0)  # a request body must arrive whole within this (408)
    max_json_depth: int = Field(default=64, ge=2, le=128)  # nesting of request bodies and upstream answers
    # OAuth 2.0 Token Exchange (RFC 8693) for tools with spec.auth.tokenExchange: Link is an OAuth client of
    # the issuer. Default URL: the Keycloak realm's token endpoint. The secret is a file in mcp.secrets_dir.
    token_exchange_url: str | None = None
    token_exchange_client_id: str = "stoa-link"
    token_exchange_client_secret_ref: str | None = None
    token_exchange_timeout_s: float = Field(default=5.0, gt=0, le=60)
    token_exchange_refresh_margin_s: float = Field(default=30.0, ge=0)  # re-exchange this long before expiry
    token_exchange_cache_size: int = Field(default=10_000, ge=0)
    upstream_max_connections: int = Field(default=200, ge=1)
    upstream_max_response_bytes: int = Field(default=4 << 20, ge=1024)
    list_cache_ttl_s: float = Field(default=5.0, ge=0)  # how long a caller's policy-filtered list is reused
    federation_backoff_initial_s: float = Field(default=0.5, gt=0)
    federation_backoff_max_s: float = Field(default=30.0, gt=0)
    federation_ping_interval_s: float = Field(default=10.0, gt=0)  # how soon a vanished upstream is noticed


class EnvoySettings(_Section):
    """What `envoy-config` and `demo` generate."""

    listen_address: str = "127.0.0.1"
    listen_port: int = Field(default=8080, ge=0, le=65535)
    admin_port: int = Field(default=9901, ge=0, le=65535)
    upstream: str | None = None  # default: the primary gateway's usual local port
    failure_mode: Literal["closed", "open"] = "closed"
    authz_timeout_ms: int = Field(default=200, ge=1, le=60_000)
    ext_proc_timeout_ms: int = Field(default=200, ge=1, le=60_000)
    ext_proc_prefixes: list[str] = Field(default_factory=list)  # routes that send bodies to ext_proc
    max_request_body_bytes: int = Field(default=65_536, ge=0)
    # Envoy sends a batch of access-log entries when this fills (or each flush_ms): Link reads a batch in
    # one go before its sliced handling, so smaller batches make a shorter stall for the checks behind it.
    # Measured against 1 MiB (bench_dataplane apikey-als1m): p99 at one connection 2.5 ms against 3.4 ms,
    # at ~3% more CPU per request. 16 KiB is Envoy's own default.
    access_log_buffer_bytes: int = Field(default=16_384, ge=1024)
    access_log_flush_ms: int = Field(default=200, ge=1)
    # Envoy's overload manager: client connections at once (0 = no cap) and the heap it may use
    # before shedding load (0 = no heap monitor); size them to the Envoy container (docs/deploy.md).
    max_downstream_connections: int = Field(default=4_096, ge=0)
    max_heap_bytes: int = Field(default=192 << 20, ge=0)
    # proxy and shadow modes: `serve` starts and supervises its own Envoy (false where Envoy runs beside it).
    supervise: bool = True


class ShadowApiSettings(_Section):
    """One legacy API observed in shadow mode; nothing is captured unless ``opt_in`` is true."""

    name: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    target: str  # http(s)://host:port of the legacy API
    prefix: str = "/"
    tenant: str = "default"
    opt_in: bool = False


class ShadowSettings(_Section):
    """Shadow mode: observe legacy APIs and learn their contracts (``--mode=shadow``)."""

    target: str | None = None  # --target: the one legacy API; naming it on the command line opts it in
    name: str | None = None  # the API's name for --target (default: derived from the target's host)
    tenant: str = "default"  # the tenant learned contracts and Tools belong to
    output: str = "var/shadow"  # --output: where drafts are written
    apis: list[ShadowApiSettings] = Field(default_factory=list)  # several APIs, each opted in explicitly
    samples_dir: str | None = None  # masked samples (default: <output>/.samples)
    # Masked samples are deleted after this many days; more than 30 is refused (privacy by design).
    retention_days: float = Field(default=14.0, gt=0)
    max_disk_bytes: int = Field(default=64 << 20, ge=1 << 16)
    max_pending: int = Field(default=10_000, ge=10)  # samples waiting in memory for the next flush
    max_body_bytes: int = Field(default=65_536, ge=0)  # per body kept in memory to learn its structure
    infer_interval_s: float = Field(default=30.0, gt=0)  # how often drafts are re-learned and written
    api_key_headers: list[str] = Field(default_factory=lambda: ["x-api-key"])

    @field_validator("retention_days")
    @classmethod
    def _retention(cls, value: float) -> float:
        if value > 30:
            raise ValueError(f"at most 30 days: raw samples are purged automatically (got {value:g})")
        return value


class ProxySettings(_Section):
    """Proxy mode: a full gateway in front of the upstreams, no primary gateway (``--mode=proxy``)."""

    upstream: str | None = None  # --upstream: where every route without its own upstream goes
    opa_endpoint: str | None = None  # --opa-endpoint: a remote OPA (REST Data API) decides every request
    # Circuit breaking, per upstream (Envoy outlier detection, thresholds, retry budget).
    max_connections: int = Field(default=1024, ge=1)
    max_pending_requests: int = Field(default=1024, ge=1)
    max_requests: int = Field(default=1024, ge=1)
    retries: int = Field(default=2, ge=0, le=10)  # only failures where the request never reached the upstream
    retry_budget_percent: float = Field(default=20.0, ge=0, le=100)
    consecutive_errors: int = Field(default=5, ge=1)  # 5xx / connect failures in a row before ejection
    ejection_interval_s: float = Field(default=5.0, gt=0)
    base_ejection_s: float = Field(default=30.0, gt=0)
    max_ejection_percent: int = Field(default=100, ge=0, le=100)
    connect_timeout_ms: int = Field(default=1000, ge=1)
    route_timeout_s: float = Field(default=30.0, ge=0)
    # Link's body-transform service (JSON body transforms), apart from the decision path.
    transform_address: str = "127.0.0.1:9193"
    transform_timeout_ms: int = Field(default=500, ge=1, le=60_000)
    # mTLS termination (downstream TLS); files are watched and rotated without restart (Envoy SDS).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None  # set: client certificates are required and verified
    tls_allowed_sans: list[str] = Field(default_factory=list)  # URI/DNS SANs accepted (empty = any the CA signed)

    _check_urls = field_validator("upstream", "opa_endpoint")(
        lambda cls, v: v if v is None else _http_url(v))

    @model_validator(mode="after")
    def _checks(self) -> ProxySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file: give both tls_cert_file and tls_key_file")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file: client certificates need TLS (tls_cert_file, tls_key_file)")
        return self


class Settings(_Section):
    """The whole configuration."""

    mode: Mode = "sidecar"
    primary_gateway: PrimaryGateway = "kong"
    gateway_id: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    server: ServerSettings = ServerSettings()
    routes: list[RouteSettings] = Field(default_factory=list)
    identity: IdentitySettings = IdentitySettings()
    policy: PolicySettings = PolicySettings()
    ratelimit: RateLimitSettings = RateLimitSettings()
    contracts: ContractSettings = ContractSettings()
    metering: MeteringSettings = MeteringSettings()
    snapshots: SnapshotSettings = SnapshotSettings()
    tracing: TracingSettings = TracingSettings()
    controlplane: ControlPlaneSettings = ControlPlaneSettings()
    registry: RegistrySettings = RegistrySettings()
    events: EventsSettings = EventsSettings()
    mcp: McpSettings = McpSettings()
    envoy: EnvoySettings = EnvoySettings()
    shadow: ShadowSettings = ShadowSettings()
    proxy: ProxySettings = ProxySettings()

    @model_validator(mode="after")
    def _combinations(self) -> Settings:
        names = [r.name for r in self.routes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"routes: duplicate route names {sorted(dup)}")
        if self.mode != "proxy":
            for i, r in enumerate(self.routes):
                if r.upstream is not None or r.transform is not None:
                    raise ValueError(f"routes: routes[{i}] ({r.name}): upstream and transform are proxy mode's "
                                     "(--mode=proxy)")
        if (self.mode == "proxy" and not self.proxy.upstream and not any(r.upstream for r in self.routes)
                and not (self.contracts.enabled and self.contracts.paths)):
            raise ValueError("proxy.upstream: proxy mode needs an upstream (--upstream URL, routes[].upstream, "
                             "or UAC contracts with backend_url)")
        if self.mode == "shadow" and not (self.shadow.target or self.shadow.apis):
            raise ValueError("shadow.target: shadow mode needs a legacy API to observe (--target URL)")
        if self.mode == "edge-mcp" and not self.mcp.enabled:
            raise ValueError("mcp.enabled: mode 'edge-mcp' runs the MCP server alone; it must be true")
        self._mcp_resource_is_bound()
        return self

    def _mcp_resource_is_bound(self) -> None:
        """OAuth on the MCP server needs a resource URL tokens are bound to (MCP authorization, RFC 8707)."""
        ids, mcp = self.identity, self.mcp
        oauth = "jwt" in ids.default_credentials and bool(ids.keycloak_url or ids.issuers)
        if mcp.enabled and oauth and not mcp.resource_url and not host_is_checked(mcp):
            raise ValueError(
                "mcp.resource_url: required when the MCP server accepts OAuth tokens and its Host header is "
                "not checked (bound off loopback without mcp.allowed_hosts, or DNS-rebinding protection off): "
                "tokens must be bound to this server's URL, e.g. https://tools.example.com/mcp")


# The platform's own environment variables (shared/seeds, ARCHITECTURE.md).
PLATFORM_ENV: dict[str, str] = {
    "GATEWAY_MODE": "mode",
    "GATEWAY_PORT": "mcp.port",
    "PRIMARY_GATEWAY": "primary_gateway",
    "KEYCLOAK_URL": "identity.keycloak_url",
    "KEYCLOAK_REALM": "identity.keycloak_realm",
    "OPA_ENABLED": "policy.enabled",
    "METERING_ENABLED": "metering.enabled",
    "KAFKA_BOOTSTRAP_SERVERS": "metering.bootstrap_servers",
    "STOA_CONTROL_PLANE_URL": "controlplane.url",
    "STOA_GATEWAY_KEY": "controlplane.gateway_key",
    "POD_NAME": "controlplane.instance_name",
}
ENV_PREFIX = "STOA_"
# Read by `stoa-link mcp --stdio` (a client of a remote Link), not settings of this process: never refused.
CLIENT_ENV = frozenset({"STOA_MCP_TOKEN", "STOA_MCP_CLIENT_ID", "STOA_MCP_CLIENT_SECRET", "STOA_MCP_CLIENT_SECRET_FILE",
                        "STOA_MCP_ISSUER", "STOA_MCP_SCOPE", "STOA_MCP_TOKEN_CACHE"})
_KEYLIKE = re.compile(r"[a-z_]+(\.[a-z_]+)?")

_SECTIONS: dict[str, type[_Section]] = {
    name: f.annotation
    for name, f in Settings.model_fields.items()
    if isinstance(f.annotation, type) and issubclass(f.annotation, _Section)
}


def _format_error(exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown setting"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
        # Cross-field checks name their key as "key: reason".
        head, sep, rest = msg.partition(": ")
        if sep and _KEYLIKE.fullmatch(head):
            loc = f"{loc}.{head}" if loc else head
            msg = rest
    if "input" in err and err["type"] not in ("extra_forbidden", "missing", "value_error"):
        msg = f"{msg} (got {err['input']!r})"
    return ConfigError(loc or "settings", msg)


def load_settings(
    config_file: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build and validate the one settings object (sources and their precedence: ``link.settings_sources``).

    ``overrides`` are dotted keys from flags (strings are coerced like env values).
    """
    from link.settings_sources import LayeredSettings, layered_sources  # it builds on this module

    sources = layered_sources(LayeredSettings, config_file, os.environ if env is None else env, overrides or {})
    try:
        # mypy sees the fields' __init__ (dataclass_transform), not BaseSettings' keyword for prepared sources.
        return LayeredSettings(_build_sources=(sources, {}))  # type: ignore[call-arg]
    except ValidationError as exc:
        raise _format_error(exc) from None


def parse_set_flags(items: Sequence[str]) -> dict[str, str]:
    """Parse ``--set key=value`` items."""
    from link.settings_sources import check_key

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(item, "expected --set KEY=VALUE")
        check_key(key.strip())
        out[key.strip()] = value
    return out
