"""Tool and ToolSet resources (gostoa.dev/v1alpha1), parsed from manifests.

A manifest is the plain dict a Kubernetes watch or a YAML file yields. Parsing
checks everything a tool call will later rely on, so a bad resource is refused
here with a :class:`ResourceError` that names the field, never at call time.
The namespace of a resource is its tenant.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

from jsonschema import exceptions as _js_exceptions
from jsonschema import validators as _js_validators

from link.rates import parse_rate

__all__ = [
    "API_VERSION",
    "Inclusion",
    "RefusedManifest",
    "ResourceError",
    "ResourceSelection",
    "TokenExchange",
    "Tool",
    "ToolAuth",
    "ToolSelection",
    "ToolSet",
    "ToolSetAuth",
    "ToolSetUpstream",
    "endpoint_placeholders",
    "parse_duration",
    "parse_tool",
    "parse_toolset",
]

API_VERSION = "gostoa.dev/v1alpha1"
GROUP = "gostoa.dev"

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
AuthType = Literal["bearer", "api_key", "service_account", "mtls", "none"]
Transport = Literal["streamable-http", "sse"]

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_AUTH_TYPES = ("bearer", "api_key", "service_account", "mtls", "none")
_TOOLSET_AUTH_TYPES = ("bearer", "header", "none")
_TRANSPORTS = ("streamable-http", "sse")
# MCP tool names: 1-128 characters of A-Z a-z 0-9 _ - . (spec 2025-11-25).
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
# Kubernetes namespace names (DNS-1123 label).
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9a-z]+$")  # an RFC 9110 token, lower-cased
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_ANNOTATION_BOOLS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


class ResourceError(Exception):
    """A resource is invalid; ``field`` is its dotted path (``spec.endpoint``)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class RefusedManifest(dict[str, Any]):
    """A manifest its source already found bad (e.g. an unset ${VAR}); the registry records ``error``.

    It still carries kind and metadata so the error is keyed to the right resource
    and a full re-list keeps that resource's previous good version.
    """

    def __init__(self, manifest: Mapping[str, Any], error: ResourceError) -> None:
        super().__init__(manifest)
        self.error = error


@dataclass(frozen=True, slots=True)
class TokenExchange:
    """``spec.auth.tokenExchange``: the upstream gets a token minted for it, with the caller as subject.

    Link exchanges the MCP caller's token at the issuer (OAuth 2.0 Token
    Exchange, RFC 8693) for one whose audience is ``audience`` (and, when
    given, RFC 8707 ``resource`` and ``scope``). The caller's own token never
    leaves Link: the MCP authorization spec forbids passing it through.
    """

    audience: str
    resource: str | None = None
    scope: str | None = None
    header_name: str = "authorization"


@dataclass(frozen=True, slots=True)
class ToolAuth:
    """How a tool authenticates to its upstream.

    ``secret_ref`` names a secret: a file (or directory, for mTLS) in the
    secrets directory. ``token_exchange`` adds a token exchanged for the
    caller (alone, or next to an API key or a client certificate).
    """

    type: AuthType = "none"
    secret_ref: str | None = None
    header_name: str | None = None
    token_exchange: TokenExchange | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    """One MCP tool backed by an HTTP endpoint (or federated from a ToolSet)."""

    tenant: str
    name: str
    display_name: str
    description: str
    endpoint: str
    method: HttpMethod = "POST"
    input_schema: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({"type": "object"}))
    output_schema: Mapping[str, Any] | None = None
    auth: ToolAuth = ToolAuth()
    rate_limit: str | None = None
    timeout_s: float = 30.0
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    annotations: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    generation: int = 0
    resource_version: str = ""
    # Set for tools discovered through a ToolSet: the set's name and the tool's upstream name.
    toolset: str = ""
    remote_name: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.name)

    @property
    def federated(self) -> bool:
        return bool(self.toolset)


@dataclass(frozen=True, slots=True)
class ToolSetAuth:
    """How Link authenticates to a federated MCP server."""

    type: Literal["bearer", "header", "none"] = "none"
    secret_ref: str | None = None
    header_name: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSetUpstream:
    url: str
    transport: Transport = "streamable-http"
    auth: ToolSetAuth = ToolSetAuth()
    timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class ToolSelection:
    """One upstream tool picked by a ToolSet (``alias`` renames it)."""

    name: str
    alias: str | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ResourceSelection:
    """One upstream resource (by URI) or resource template (by URI template) picked by a ToolSet."""

    uri: str
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Inclusion:
    """``spec.include``: registry entries of the set's tenant that its virtual server serves too."""

    tools: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolSet:
    """An upstream MCP server whose tools, resources and prompts are federated under a tenant."""

    tenant: str
    name: str
    upstream: ToolSetUpstream
    tools: tuple[ToolSelection, ...] = ()  # empty = all
    prefix: str = ""
    refresh_interval_s: float = 300.0
    generation: int = 0
    resource_version: str = ""
    serve: bool = False  # also served as its own MCP endpoint, /mcp/v/{name} (a virtual server)
    resources: tuple[ResourceSelection, ...] = ()  # empty = all
    prompts: tuple[ToolSelection, ...] = ()  # empty = all; alias renames like a tool's
    include: Inclusion = Inclusion()

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.name)

    def exposed_name(self, remote_name: str) -> str | None:
        """The name a remote tool gets here, or None when the set does not select it."""
        return _exposed(self.tools, self.prefix, remote_name)

    def exposed_prompt(self, remote_name: str) -> str | None:
        """The name a remote prompt gets here, or None when the set does not select it."""
        return _exposed(self.prompts, self.prefix, remote_name)

    def selects_resource(self, uri: str) -> bool:
        """Whether the set exposes the upstream resource of this URI (or template of this URI template)."""
        if not self.resources:
            return True
        return any(sel.uri == uri and sel.enabled for sel in self.resources)


def _exposed(selections: tuple[ToolSelection, ...], prefix: str, remote_name: str) -> str | None:
    """What a selection (empty: everything, under the prefix) calls a remote tool or prompt; None: not selected."""
    if not selections:
        return prefix + remote_name
    for sel in selections:
        if sel.name == remote_name:
            return (sel.alias or prefix + remote_name) if sel.enabled else None
    return None


# -- helpers ----------------------------------------------------------------


def parse_duration(value: Any, where: str) -> float:
    """``30s``, ``5m``, ``1h``, ``500ms`` or a number of seconds -> seconds (> 0)."""
    if isinstance(value, bool):
        raise ResourceError(where, "expected a duration such as 30s, 5m, 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ResourceError(where, f"expected a duration such as 30s, 5m, 1h, got {value!r}")
    if seconds <= 0:
        raise ResourceError(where, "must be positive")
    return seconds


def endpoint_placeholders(endpoint: str) -> tuple[str, ...]:
    """The ``{name}`` placeholders of an endpoint, in order."""
    return tuple(_PLACEHOLDER.findall(endpoint))


def _mapping(value: Any, where: str, *, required: bool = False) -> Mapping[str, Any]:
    if value is None:
        if required:
            raise ResourceError(where, "required")
        return {}
    if not isinstance(value, Mapping):
        raise ResourceError(where, f"expected a mapping, got {type(value).__name__}")
    return value


def _string(value: Any, where: str, *, required: bool = False, default: str = "") -> str:
    if value is None or (required and value == ""):
        if required:
            raise ResourceError(where, "required")
        return default
    if not isinstance(value, str):
        raise ResourceError(where, f"expected a string, got {type(value).__name__}")
    return value


def _bool(value: Any, where: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ResourceError(where, f"expected true or false, got {value!r}")
    return value


def _http_url(value: str, where: str, *, allow_placeholders: bool) -> None:
    probe = _PLACEHOLDER.sub("x", value) if allow_placeholders else value
    parts = urlsplit(probe)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ResourceError(where, f"expected an http(s) URL, got {value!r}")
    if "{" in probe or "}" in probe:
        raise ResourceError(where, "unbalanced '{' or '}'")


def _metadata(manifest: Mapping[str, Any], kind: str) -> tuple[str, str, int, str]:
    api = manifest.get("apiVersion")
    if api != API_VERSION:
        raise ResourceError("apiVersion", f"expected {API_VERSION}, got {api!r}")
    if manifest.get("kind") != kind:
        raise ResourceError("kind", f"expected {kind}, got {manifest.get('kind')!r}")
    meta = _mapping(manifest.get("metadata"), "metadata", required=True)
    name = _string(meta.get("name"), "metadata.name", required=True)
    namespace = _string(meta.get("namespace"), "metadata.namespace", required=True)
    if not _NAMESPACE.match(namespace):
        raise ResourceError("metadata.namespace", f"{namespace!r} is not a valid namespace (tenant) name")
    generation = meta.get("generation", 0)
    if not isinstance(generation, int) or isinstance(generation, bool):
        raise ResourceError("metadata.generation", "expected an integer")
    rv = meta.get("resourceVersion", "")
    return name, namespace, generation, str(rv)


@functools.lru_cache(maxsize=4096)
def _schema_problem(canonical: str) -> tuple[str, str] | None:
    """(path, message) of what is wrong with a JSON Schema, or None; cached because checking is slow
    (about a millisecond) and a registry re-list checks every schema again."""
    schema = json.loads(canonical)
    cls = _js_validators.validator_for(schema, default=_js_validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except _js_exceptions.SchemaError as exc:
        path = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in exc.path)
        return path, exc.message
    return None


def _json_schema(value: Any, where: str) -> dict[str, Any]:
    schema = dict(_mapping(value, where))
    try:
        canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        raise ResourceError(where, "must be plain JSON") from None
    problem = _schema_problem(canonical)
    if problem is not None:
        raise ResourceError(f"{where}{problem[0]}", f"not a valid JSON Schema: {problem[1]}")
    return schema


def freeze(value: Any) -> Any:
    """Read-only deep copy (mappings become MappingProxyType, lists tuples) of a JSON value."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The plain JSON (dict/list) form of a value :func:`freeze` produced."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


# -- Tool -------------------------------------------------------------------


def _tool_auth(value: Any) -> ToolAuth:
    auth = _mapping(value, "spec.auth")
    if not auth:
        return ToolAuth()
    kind = _string(auth.get("type"), "spec.auth.type", default="none")
    if kind not in _AUTH_TYPES:
        raise ResourceError("spec.auth.type", f"expected one of {', '.join(_AUTH_TYPES)}, got {kind!r}")
    secret_ref = _string(auth.get("secretRef"), "spec.auth.secretRef") or None
    header = _string(auth.get("headerName"), "spec.auth.headerName") or None
    if _bool(auth.get("passthroughUserToken"), "spec.auth.passthroughUserToken", False):
        raise ResourceError("spec.auth.passthroughUserToken", _PASSTHROUGH_REMOVED)
    exchange = _token_exchange(auth.get("tokenExchange"))
    if kind in ("bearer", "api_key", "mtls") and secret_ref is None:
        raise ResourceError("spec.auth.secretRef", f"required for auth type {kind}")
    if secret_ref is not None and ("/" in secret_ref or secret_ref.startswith(".")):
        raise ResourceError("spec.auth.secretRef", "must be a plain secret name")
    if kind == "api_key" and header is None:
        header = "X-Api-Key"
    if exchange is not None and kind in ("bearer", "service_account") and \
            (header or "authorization").lower() == exchange.header_name:
        raise ResourceError("spec.auth.tokenExchange.headerName",
                            f"auth type {kind} already sends {exchange.header_name}; name another header")
    return ToolAuth(type=kind, secret_ref=secret_ref, header_name=header,  # type: ignore[arg-type]
                    token_exchange=exchange)


_PASSTHROUGH_REMOVED = (
    "removed: forwarding the caller's token upstream is forbidden by the MCP authorization spec; "
    "use spec.auth.tokenExchange (OAuth 2.0 Token Exchange) so the upstream gets a token minted for it"
)


def _token_exchange(value: Any) -> TokenExchange | None:
    spec = _mapping(value, "spec.auth.tokenExchange")
    if value is None:
        return None
    where = "spec.auth.tokenExchange"
    unknown = sorted(set(spec) - {"audience", "resource", "scope", "headerName"})
    if unknown:
        raise ResourceError(f"{where}.{unknown[0]}", "unknown field")
    audience = _string(spec.get("audience"), f"{where}.audience", required=True)
    resource = _string(spec.get("resource"), f"{where}.resource") or None
    if resource is not None:
        parts = urlsplit(resource)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise ResourceError(f"{where}.resource", "must be an absolute http(s) URL without a fragment")
    scope = _string(spec.get("scope"), f"{where}.scope") or None
    header = _string(spec.get("headerName"), f"{where}.headerName", default="authorization").lower()
    if not header or not _HEADER_NAME.fullmatch(header):
        raise ResourceError(f"{where}.headerName", "must be an HTTP header name")
    return TokenExchange(audience=audience, resource=resource, scope=scope, header_name=header)


def _annotations(value: Any) -> Mapping[str, Any]:
    ann = _mapping(value, "spec.annotations")
    for key in _ANNOTATION_BOOLS:
        if key in ann and not isinstance(ann[key], bool):
            raise ResourceError(f"spec.annotations.{key}", "expected true or false")
    if "title" in ann and not isinstance(ann["title"], str):
        raise ResourceError("spec.annotations.title", "expected a string")
    return freeze(ann)  # type: ignore[no-any-return]


def _headers(value: Any, where: str) -> Mapping[str, str]:
    headers = _mapping(value, where)
    for k, v in headers.items():
        if not isinstance(k, str) or not re.match(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", k):
            raise ResourceError(where, f"{k!r} is not a valid header name")
        if not isinstance(v, str) or "\n" in v or "\r" in v:
            raise ResourceError(f"{where}.{k}", "expected a single-line string")
    return MappingProxyType(dict(headers))


def parse_tool(manifest: Mapping[str, Any]) -> Tool:
    """Parse and check a ``kind: Tool`` manifest; raises :class:`ResourceError`."""
    if not isinstance(manifest, Mapping):
        raise ResourceError("manifest", "expected a mapping")
    name, tenant, generation, rv = _metadata(manifest, "Tool")
    if not _TOOL_NAME.match(name):
        raise ResourceError("metadata.name", "a tool name is 1-128 characters of A-Z a-z 0-9 _ - .")
    spec = _mapping(manifest.get("spec"), "spec", required=True)
    display = _string(spec.get("displayName"), "spec.displayName", required=True)
    description = _string(spec.get("description"), "spec.description", required=True)
    endpoint = _string(spec.get("endpoint"), "spec.endpoint", required=True)
    _http_url(endpoint, "spec.endpoint", allow_placeholders=True)
    method = _string(spec.get("method"), "spec.method", default="POST").upper()
    if method not in _METHODS:
        raise ResourceError("spec.method", f"expected one of {', '.join(_METHODS)}, got {method!r}")

    input_schema = _json_schema(spec.get("inputSchema"), "spec.inputSchema") or {"type": "object"}
    if input_schema.get("type", "object") != "object":
        raise ResourceError("spec.inputSchema.type", "a tool's input schema must be of type object")
    input_schema.setdefault("type", "object")
    props = input_schema.get("properties")
    for ph in endpoint_placeholders(endpoint):
        if not _IDENT.match(ph):
            raise ResourceError("spec.endpoint", f"placeholder {{{ph}}} is not a valid argument name")
        if isinstance(props, Mapping) and ph not in props:
            raise ResourceError("spec.endpoint", f"placeholder {{{ph}}} is not a property of the inputSchema")
    output_raw = spec.get("outputSchema")
    output_schema = _json_schema(output_raw, "spec.outputSchema") if output_raw else None
    if output_schema is not None and output_schema.get("type", "object") != "object":
        raise ResourceError("spec.outputSchema.type", "an output schema must be of type object")

    rate_limit = _string(spec.get("rateLimit"), "spec.rateLimit") or None
    if rate_limit is not None:
        try:
            parse_rate(rate_limit)
        except ValueError as exc:
            raise ResourceError("spec.rateLimit", str(exc)) from None
    timeout = parse_duration(spec["timeout"], "spec.timeout") if spec.get("timeout") is not None else 30.0
    return Tool(
        tenant=tenant,
        name=name,
        display_name=display,
        description=description,
        endpoint=endpoint,
        method=method,  # type: ignore[arg-type]
        input_schema=freeze(input_schema),
        output_schema=freeze(output_schema) if output_schema is not None else None,
        auth=_tool_auth(spec.get("auth")),
        rate_limit=rate_limit,
        timeout_s=timeout,
        headers=_headers(spec.get("headers"), "spec.headers"),
        annotations=_annotations(spec.get("annotations")),
        generation=generation,
        resource_version=rv,
    )


# -- ToolSet ----------------------------------------------------------------


def _toolset_upstream(value: Any) -> ToolSetUpstream:
    up = _mapping(value, "spec.upstream", required=True)
    url = _string(up.get("url"), "spec.upstream.url", required=True)
    _http_url(url, "spec.upstream.url", allow_placeholders=False)
    transport = _string(up.get("transport"), "spec.upstream.transport", default="streamable-http")
    if transport not in _TRANSPORTS:
        raise ResourceError("spec.upstream.transport",
                            f"expected one of {', '.join(_TRANSPORTS)}, got {transport!r}")
    auth_raw = _mapping(up.get("auth"), "spec.upstream.auth")
    auth = ToolSetAuth()
    if auth_raw:
        kind = _string(auth_raw.get("type"), "spec.upstream.auth.type", default="none")
        if kind not in _TOOLSET_AUTH_TYPES:
            raise ResourceError("spec.upstream.auth.type",
                                f"expected one of {', '.join(_TOOLSET_AUTH_TYPES)}, got {kind!r}")
        secret_ref = _string(auth_raw.get("secretRef"), "spec.upstream.auth.secretRef") or None
        header = _string(auth_raw.get("headerName"), "spec.upstream.auth.headerName") or None
        if kind != "none" and secret_ref is None:
            raise ResourceError("spec.upstream.auth.secretRef", f"required for auth type {kind}")
        if kind == "header" and header is None:
            raise ResourceError("spec.upstream.auth.headerName", "required for auth type header")
        auth = ToolSetAuth(type=kind, secret_ref=secret_ref, header_name=header)  # type: ignore[arg-type]
    timeout = 30.0
    if up.get("timeoutSeconds") is not None:
        timeout = parse_duration(up["timeoutSeconds"], "spec.upstream.timeoutSeconds")
    return ToolSetUpstream(url=url, transport=transport, auth=auth, timeout_s=timeout)  # type: ignore[arg-type]


def _selections(value: Any, prefix: str, field_name: str = "spec.tools",
                kind: str = "tool") -> tuple[ToolSelection, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ResourceError(field_name, "expected a list")
    out: list[ToolSelection] = []
    exposed: set[str] = set()
    for i, item in enumerate(value):
        where = f"{field_name}[{i}]"
        entry = _mapping(item, where, required=True)
        name = _string(entry.get("name"), f"{where}.name", required=True)
        alias = _string(entry.get("alias"), f"{where}.alias") or None
        if alias is not None and not _TOOL_NAME.match(alias):
            raise ResourceError(f"{where}.alias", f"a {kind} name is 1-128 characters of A-Z a-z 0-9 _ - .")
        enabled = _bool(entry.get("enabled"), f"{where}.enabled", True)
        sel = ToolSelection(name=name, alias=alias, enabled=enabled)
        final = alias or prefix + name
        if sel.enabled and final in exposed:
            raise ResourceError(where, f"{kind} name {final!r} is exposed twice")
        exposed.add(final)
        out.append(sel)
    return tuple(out)


def _resource_selections(value: Any) -> tuple[ResourceSelection, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ResourceError("spec.resources", "expected a list")
    out: list[ResourceSelection] = []
    for i, item in enumerate(value):
        where = f"spec.resources[{i}]"
        entry = _mapping(item, where, required=True)
        uri = _string(entry.get("uri"), f"{where}.uri", required=True)
        if any(sel.uri == uri for sel in out):
            raise ResourceError(f"{where}.uri", f"{uri!r} is selected twice")
        out.append(ResourceSelection(uri=uri, enabled=_bool(entry.get("enabled"), f"{where}.enabled", True)))
    return tuple(out)


def _names(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ResourceError(where, "expected a list of names")
    out: list[str] = []
    for i, item in enumerate(value):
        name = _string(item, f"{where}[{i}]", required=True)
        if name in out:
            raise ResourceError(f"{where}[{i}]", f"{name!r} is listed twice")
        out.append(name)
    return tuple(out)


def _inclusion(value: Any) -> Inclusion:
    raw = _mapping(value, "spec.include")
    unknown = sorted(set(raw) - {"tools", "resources", "prompts"})
    if unknown:
        raise ResourceError(f"spec.include.{unknown[0]}", "expected tools, resources or prompts")
    return Inclusion(tools=_names(raw.get("tools"), "spec.include.tools"),
                     resources=_names(raw.get("resources"), "spec.include.resources"),
                     prompts=_names(raw.get("prompts"), "spec.include.prompts"))


def parse_toolset(manifest: Mapping[str, Any]) -> ToolSet:
    """Parse and check a ``kind: ToolSet`` manifest; raises :class:`ResourceError`."""
    if not isinstance(manifest, Mapping):
        raise ResourceError("manifest", "expected a mapping")
    name, tenant, generation, rv = _metadata(manifest, "ToolSet")
    spec = _mapping(manifest.get("spec"), "spec", required=True)
    prefix = _string(spec.get("prefix"), "spec.prefix")
    if prefix and not re.match(r"^[A-Za-z0-9_.\-]{1,64}$", prefix):
        raise ResourceError("spec.prefix", "expected up to 64 characters of A-Z a-z 0-9 _ - .")
    refresh = 300.0
    if spec.get("refreshInterval") is not None:
        refresh = parse_duration(spec["refreshInterval"], "spec.refreshInterval")
    return ToolSet(
        tenant=tenant,
        name=name,
        upstream=_toolset_upstream(spec.get("upstream")),
        tools=_selections(spec.get("tools"), prefix),
        prefix=prefix,
        refresh_interval_s=refresh,
        generation=generation,
        resource_version=rv,
        serve=_bool(spec.get("serve"), "spec.serve", False),
        resources=_resource_selections(spec.get("resources")),
        prompts=_selections(spec.get("prompts"), prefix, "spec.prompts", "prompt"),
        include=_inclusion(spec.get("include")),
    )
