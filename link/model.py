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
    # Kept only in memory so a tool can pass the caller's token through; never logged.
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

    def ensure_request_id(self) -> str:
        if not self.request_id:
            self.request_id = self.headers.get("x-request-id") or str(uuid.uuid4())
        return self.request_id


@dataclass(slots=True)
class Decision:
    """The pipeline's answer.

    ``allowed`` requests get ``upstream_headers`` added and ``remove_headers``
    stripped before they leave; refused ones get ``http_status`` and ``body``.
    ``response_headers`` go to the client either way.
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
    metadata: dict[str, Any] = field(default_factory=dict)

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
    metadata: dict[str, Any] = field(default_factory=dict)
    decision_id: str = ""
    dry_run_denials: list[str] = field(default_factory=list)
