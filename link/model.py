"""The project's own request and decision types.

Every entry point (Envoy ext_authz, ext_proc, MCP tool calls) converts its wire
message into a :class:`Request`; the pipeline answers with a :class:`Decision`.
Envoy and MCP types never cross this boundary.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

TenantId = str
ConsumerId = str


class Outcome(StrEnum):
    """The metering ``status`` of a request (shared/CONTRACTS.md)."""

    SUCCESS = "success"
    ERROR = "error"
    RATE_LIMITED = "rate_limited"
    POLICY_DENIED = "policy_denied"
    UNAUTHENTICATED = "unauthenticated"
    NOT_FOUND = "not_found"
    INVALID = "invalid"


class CredentialKind(StrEnum):
    JWT = "jwt"
    API_KEY = "api_key"
    MTLS = "mtls"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """What the TLS layer proved about a peer (from Envoy's peer attributes)."""

    principal: str = ""  # URI SAN / SPIFFE ID, else subject, as Envoy reports it
    certificate_pem: str = ""
    subject: str = ""
    uri_sans: tuple[str, ...] = ()
    dns_sans: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller."""

    kind: CredentialKind
    subject: str
    consumer: ConsumerId
    tenant: TenantId
    scopes: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    claims: dict[str, Any] = field(default_factory=dict)
    issuer: str = ""
    # Kept only in memory, as the subject of a token exchange (mcp_server.exchange); never logged or forwarded.
    token: str = field(default="", repr=False)
    expires_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "subject": self.subject,
            "consumer": self.consumer,
            "tenant": self.tenant,
            "scopes": sorted(self.scopes),
            "roles": sorted(self.roles),
            "issuer": self.issuer,
        }


ANONYMOUS = Principal(kind=CredentialKind.ANONYMOUS, subject="", consumer="anonymous", tenant="")


@dataclass(slots=True)
class Request:
    """One request to decide on, whatever protocol it came from."""

    method: str
    path: str  # path only, no query string
    headers: dict[str, str]  # lower-cased names
    query: str = ""
    host: str = ""
    scheme: str = "http"
    body: bytes | None = None
    body_truncated: bool = False
    request_id: str = ""
    stream_id: str = ""  # Envoy's own id of the request (ext_authz attributes.request.http.id)
    envoy_time: tuple[int, int] | None = None  # (seconds, nanos) Envoy received the request, when it says
    source_address: str = ""
    source_port: int = 0
    destination_address: str = ""
    destination_port: int = 0
    peer: PeerIdentity | None = None
    protocol: str = "HTTP/1.1"
    # Set for MCP tool calls.
    tool_name: str | None = None
    tool_tenant: TenantId | None = None
    arguments: dict[str, Any] | None = None
    # Envoy route-level hints (context extensions) such as the route name.
    context: dict[str, str] = field(default_factory=dict)
    received_at: float = field(default_factory=time.time)
    received_ns: int = field(default_factory=time.perf_counter_ns)
    # The body as JSON, parsed once for every phase reading it (link.bodyjson): (body, value, refusal).
    body_json: tuple[bytes, Any, Exception | None] | None = field(default=None, repr=False, compare=False)

    def ensure_request_id(self) -> str:
        if not self.request_id:
            self.request_id = self.headers.get("x-request-id") or str(uuid.uuid4())
        return self.request_id


HeaderPairs = list[tuple[str, str]]


@dataclass(slots=True)
class PolicyEffects:
    """What an OPA-Envoy style policy result asks for, kept in the order and form OPA-Envoy sends it.

    Header lists hold one ``(name, value)`` entry per value; the adapters hand them to Envoy with
    Envoy's default header action, exactly as OPA-Envoy does (upstream headers replace, client
    headers are appended). ``metadata`` is the policy's ``dynamic_metadata``, passed through.
    """

    upstream_headers: HeaderPairs = field(default_factory=list)  # allowed: "headers"
    # allowed: "response_headers_to_add"; refused: "headers"
    response_headers: HeaderPairs = field(default_factory=list)
    query_to_set: HeaderPairs = field(default_factory=list)
    query_to_remove: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class DecisionRecord:
    """What Link decided about one request and why: one typed record, read by every sink.

    Phases fill what they learn (the rate-limit scope, the contract's verdict …), the response
    phase adds who the caller was and where the request went. The adapters alone turn it into
    Envoy's dynamic metadata and back (:mod:`link.decision_metadata`), so nothing else parses
    metadata keys. Empty strings and ``False`` mean "not set" and are never sent.
    """

    decision_id: str = ""
    outcome: str = ""  # an Outcome value
    reason: str = ""
    tenant: str = ""
    consumer: str = ""
    subject: str = ""
    credential: str = ""  # a CredentialKind value
    scopes: tuple[str, ...] = ()  # sorted
    roles: tuple[str, ...] = ()  # sorted
    route: str = ""
    api: str = ""
    route_template: str = ""
    tool: str = ""
    t_link_us: int = 0  # Link's own time on the request (its phases)
    entry: str = ""  # who asked: "" (ext_authz), "ext_proc" or "mcp"
    mcp_action: str = ""
    mcp_transport: str = ""
    error: str = ""  # a phase that crashed: "<phase>: <exception type>"
    ratelimit_applied: bool = False
    ratelimit_backend: str = ""  # "unavailable" when the shared store could not answer
    ratelimit_scope: str = ""  # the scope whose limit refused the request
    contract: str = ""
    contract_version: str = ""
    contract_mode: str = ""  # "observe" when violations are only recorded
    contract_violation: str = ""
    contract_body: str = ""  # "unavailable" when the body could not be checked whole
    operation_id: str = ""
    policy_dry_run: str = ""  # what enforcing would have refused ("deny", "request_parse_error")
    policy_error: str = ""
    policy_input_error: str = ""
    policy_undefined: bool = False
    trace_id: str = ""  # the decision span's trace, when Link traces
    decision: str = ""  # "allow" | "deny", with the trace

    def merge(self, other: DecisionRecord) -> None:
        """Take every field ``other`` has set (a later decision about the same request)."""
        for name in DecisionRecord.__slots__:
            value = getattr(other, name)
            if value:
                setattr(self, name, value)


@dataclass(slots=True)
class Decision:
    """The pipeline's answer.

    ``allowed`` requests get ``upstream_headers`` added and ``remove_headers``
    stripped before they leave; refused ones get ``http_status`` and ``body``.
    ``response_headers`` go to the client either way. ``record`` is Link's own account
    of the decision (the adapters file it in Envoy's metadata under a prefix of its own, see
    :mod:`link.decision_metadata`); ``policy`` carries what the policy's result
    asked for. ``policy_response``: the refusal is the policy's own response
    (status, headers, body), sent as it is, never dressed in Link's JSON error.
    """

    allowed: bool
    http_status: int = 200
    outcome: Outcome = Outcome.SUCCESS
    reason: str = ""  # machine code, e.g. "invalid_token", "rate_limited"
    message: str = ""  # short, safe for clients
    upstream_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: list[str] = field(default_factory=list)
    response_headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str = "application/json"
    record: DecisionRecord = field(default_factory=DecisionRecord)
    policy: PolicyEffects | None = None
    policy_response: bool = False

    @classmethod
    def deny(
        cls,
        status: int,
        outcome: Outcome,
        reason: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> Decision:
        return cls(
            allowed=False,
            http_status=status,
            outcome=outcome,
            reason=reason,
            message=message,
            response_headers=dict(headers or {}),
        )


@dataclass(slots=True)
class RouteMatch:
    """The configured route (API or tool) a request belongs to."""

    name: str
    tenant: TenantId | None = None
    api: str | None = None
    template: str | None = None  # templated path for metering, e.g. /invoices/{id}
    anonymous: bool = False
    optional_identity: bool = False  # credentials checked when present; none = the anonymous principal
    credentials: tuple[CredentialKind, ...] = ()
    required_scopes: tuple[str, ...] = ()
    rate_limit: str | None = None
    contract: str | None = None
    snapshots: bool = False
    path_params: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class RequestContext:
    """State carried through the pipeline for one request."""

    request: Request
    route: RouteMatch | None = None
    principal: Principal = ANONYMOUS
    # Phase name -> nanoseconds spent.
    timings_ns: dict[str, int] = field(default_factory=dict)
    # Filled by phases for the response phase and the sinks.
    upstream_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: list[str] = field(default_factory=list)
    response_headers: dict[str, str] = field(default_factory=dict)
    record: DecisionRecord = field(default_factory=DecisionRecord)  # what the phases learned, for the sinks
    policy: PolicyEffects | None = None
    decision_id: str = ""
    dry_run_denials: list[str] = field(default_factory=list)
