"""All of STOA Link's settings, in one place.

Precedence: command-line flags > environment > YAML file (``--config``) > defaults.

Every key has a dotted name (``metering.topic``). The environment spells it
``STOA_METERING_TOPIC``; the platform's own variables (``GATEWAY_MODE``,
``KEYCLOAK_URL``, ``OPA_ENABLED`` …) are accepted too. A flag spells it
``--metering-topic`` (or ``--set metering.topic=…``); the seed's short flags
(``--mode``, ``--primary-gateway``, ``--metering-enabled``) work as documented.

Anything wrong stops start-up with :class:`ConfigError`, which names the key
and the reason; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "ConfigError",
    "Settings",
    "load_settings",
]

Mode = Literal["sidecar", "edge-mcp", "proxy", "shadow"]
PrimaryGateway = Literal["kong", "gravitee", "webmethods"]
CredentialName = Literal["jwt", "api_key", "mtls"]

PRIMARY_GATEWAY_PORTS: dict[str, int] = {"kong": 8000, "gravitee": 8082, "webmethods": 5555}


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


def _rate(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    from link.rates import parse_rate  # local import keeps settings import-light

    parse_rate(value)
    return value


class ServerSettings(_Section):
    """The gRPC server Envoy talks to, and the admin HTTP server."""

    grpc_address: str = "127.0.0.1:9191"
    grpc_uds: str | None = None  # e.g. /var/run/stoa/link.sock, served in addition
    admin_address: str = "127.0.0.1:8081"
    # Envoy pings every keepalive_time; the server must permit at least that rate.
    keepalive_time_ms: int = Field(default=30_000, ge=1_000)
    keepalive_min_ping_interval_ms: int = Field(default=5_000, ge=100)
    max_concurrent_streams: int = Field(default=1_000, ge=1)
    shutdown_grace_s: float = Field(default=10.0, ge=0, le=300)
    # Extra processes, each on its own port after grpc_address's; Envoy balances across them.
    workers: int = Field(default=1, ge=1, le=64)

    _check_grpc = field_validator("grpc_address", "admin_address")(lambda cls, v: _address(v))


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

    _check_rate = field_validator("rate_limit")(lambda cls, v: _rate(v))

    @model_validator(mode="after")
    def _one_matcher(self) -> RouteSettings:
        if (self.prefix is None) == (self.template is None):
            raise ValueError("give exactly one of prefix or template")
        path = self.prefix if self.prefix is not None else self.template
        if not path or not path.startswith("/"):
            raise ValueError("prefix/template must start with '/'")
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
    redis_timeout_ms: int = Field(default=20, ge=1, le=5_000)
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
    compression: Literal["gzip", "none", "lz4", "zstd", "snappy"] = "gzip"
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
    mask_keys: list[str] = Field(
        default_factory=lambda: ["password", "passwd", "secret", "token", "api_key", "apikey", "access_token",
                                 "refresh_token", "client_secret", "authorization", "credit_card", "ssn"]
    )
    purge_interval_s: float = Field(default=60, gt=0)
    queue_max: int = Field(default=1_000, ge=1)  # captured exchanges waiting for the writer; more are dropped
    publish_queue_max: int = Field(default=1_000, ge=1)  # snapshots waiting for Kafka; more are not published
    # An error storm yields thousands of alike snapshots; masking them would compete with the request path.
    max_per_second: float = Field(default=20.0, gt=0)

    @field_validator("retention_days")
    @classmethod
    def _max_retention(cls, v: float) -> float:
        if v > 30:
            raise ValueError("retention is at most 30 days")
        return v


class TracingSettings(_Section):
    enabled: bool = False
    otlp_endpoint: str | None = None  # OTEL_EXPORTER_OTLP_ENDPOINT is honoured too
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    service_name: str = "stoa-link"

    @model_validator(mode="after")
    def _needs_endpoint(self) -> TracingSettings:
        if self.enabled and not (self.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
            raise ValueError("otlp_endpoint: tracing needs an OTLP endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT)")
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

    @model_validator(mode="after")
    def _backoff_order(self) -> ControlPlaneSettings:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        return self


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


class McpSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=3001, ge=0, le=65535)  # GATEWAY_PORT
    public_tenants: list[str] = Field(default_factory=list)  # tenants whose tools need no token
    allowed_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1:*", "localhost:*", "[::1]:*"])
    allowed_origins: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:*", "http://localhost:*"])
    resource_url: str | None = None  # the protected resource's URL for OAuth metadata
    required_scopes: list[str] = Field(default_factory=list)
    # OAuth authorization servers named in the resource metadata; default: the Keycloak realm.
    authorization_servers: list[str] = Field(default_factory=list)
    dns_rebinding_protection: bool = True  # check Host and Origin against allowed_hosts/allowed_origins
    secrets_dir: str | None = None  # one file per Tool secretRef (a directory of files for mTLS)
    # Streamable HTTP answers POSTs with JSON (cheaper; tool calls send no per-request notifications);
    # false answers with an SSE stream. Server notifications use the session's GET stream either way.
    json_response: bool = True
    session_idle_timeout_s: float = Field(default=1800.0, gt=0)
    max_sessions: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=4 << 20, ge=1024)
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
    access_log_buffer_bytes: int = Field(default=1 << 20, ge=1024)
    access_log_flush_ms: int = Field(default=200, ge=1)


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
    mcp: McpSettings = McpSettings()
    envoy: EnvoySettings = EnvoySettings()

    @model_validator(mode="after")
    def _combinations(self) -> Settings:
        names = [r.name for r in self.routes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"routes: duplicate route names {sorted(dup)}")
        if self.mode in ("proxy", "shadow"):
            raise ValueError(f"mode: {self.mode!r} is not served by STOA Link (use 'sidecar' or 'edge-mcp')")
        if self.mode == "edge-mcp" and not self.mcp.enabled:
            raise ValueError("mcp.enabled: mode 'edge-mcp' runs the MCP server alone; it must be true")
        return self


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
_KEYLIKE = re.compile(r"[a-z_]+(\.[a-z_]+)?")

_SECTIONS: dict[str, type[_Section]] = {
    name: f.annotation
    for name, f in Settings.model_fields.items()
    if isinstance(f.annotation, type) and issubclass(f.annotation, _Section)
}


def _known_keys() -> dict[str, str]:
    """Every scalar key as dotted name, mapped from its env spelling."""
    keys: dict[str, str] = {}
    for name in Settings.model_fields:
        section = _SECTIONS.get(name)
        if section is None:
            keys[f"{ENV_PREFIX}{name.upper()}"] = name
            continue
        for sub in section.model_fields:
            keys[f"{ENV_PREFIX}{name.upper()}_{sub.upper()}"] = f"{name}.{sub}"
    return keys


def _coerce_scalar(key: str, raw: str) -> Any:
    """Turn a string from env/flags into the value pydantic expects; lists are comma-separated."""
    annotation = _annotation_of(key)
    text = str(annotation)
    if "list[" in text:
        return [item.strip() for item in raw.split(",") if item.strip()]
    if "dict[" in text:
        try:
            loaded = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(key, f"expected a mapping (YAML/JSON): {exc}") from None
        return loaded
    if raw == "" and "None" in text:
        return None
    return raw


def _annotation_of(key: str) -> Any:
    head, _, tail = key.partition(".")
    if not tail:
        return Settings.model_fields[head].annotation
    return _SECTIONS[head].model_fields[tail].annotation


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    head, _, tail = key.partition(".")
    if not tail:
        tree[head] = value
        return
    node = tree.setdefault(head, {})
    if not isinstance(node, dict):
        raise ConfigError(head, "expected a mapping")
    node[tail] = value


def _validate_key(key: str) -> None:
    head, _, tail = key.partition(".")
    if head not in Settings.model_fields:
        raise ConfigError(key, "unknown setting")
    if tail:
        section = _SECTIONS.get(head)
        if section is None or tail not in section.model_fields:
            raise ConfigError(key, "unknown setting")
    elif head in _SECTIONS:
        raise ConfigError(key, "is a section; set one of its keys")


def _from_file(path: str) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("--config", f"{path} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError("--config", f"{path} must hold a mapping at the top level")
    return data


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


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
    """Build and validate the one settings object.

    ``overrides`` are dotted keys from flags (strings are coerced like env values).
    """
    env = os.environ if env is None else env
    tree: dict[str, Any] = _from_file(config_file) if config_file else {}

    from_env: dict[str, Any] = {}
    known = _known_keys()
    for var, key in PLATFORM_ENV.items():
        if env.get(var) not in (None, ""):
            _set_dotted(from_env, key, _coerce_scalar(key, env[var]))
    for var, raw in env.items():
        if var.startswith(ENV_PREFIX) and var not in PLATFORM_ENV:
            found = known.get(var)
            if found is None:
                continue  # other STOA_* variables may belong to other tools
            _set_dotted(from_env, found, _coerce_scalar(found, raw))
    tree = _merge(tree, from_env)

    flags: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        _validate_key(key)
        _set_dotted(flags, key, _coerce_scalar(key, value) if isinstance(value, str) else value)
    tree = _merge(tree, flags)

    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        raise _format_error(exc) from None


def parse_set_flags(items: Sequence[str]) -> dict[str, str]:
    """Parse ``--set key=value`` items."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(item, "expected --set KEY=VALUE")
        _validate_key(key.strip())
        out[key.strip()] = value
    return out
