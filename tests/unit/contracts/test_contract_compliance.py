"""A contract's required policies: refused at load when Link cannot keep them, enforced per request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from link.model import CredentialKind, PeerIdentity, Principal, Request, RequestContext, RouteMatch
from link.pipeline.contract import build_contract_phase
from link.settings import ConfigError, load_settings

POLICIES = {
    "H": ["rate-limit", "auth-jwt"],
    "VH": ["rate-limit", "auth-jwt", "mtls", "audit-logging"],
    "VVH": ["rate-limit", "auth-jwt", "mtls", "audit-logging", "data-encryption", "geo-restriction"],
}
COMPLIANT = {"ratelimit.tenant_default": "100/min", "metering.bootstrap_servers": "127.0.0.1:9"}


def write_contract(directory: Path, classification: str, policies: list[str] | None = None,
                   backend: str = "https://billing.internal/invoices/{id}", tool: str = "get_invoice") -> str:
    (directory / "c.yaml").write_text(f"""
name: billing-api
version: 1.0.0
tenant_id: tenant-acme
classification: {classification}
required_policies: {policies if policies is not None else POLICIES[classification]}
status: published
endpoints:
  - path: /invoices/{{id}}
    methods: [GET]
    backend_url: {backend}
    llm: {{tool_name: {tool}, side_effects: read}}
""".replace("'", ""))
    return str(directory)


def phase_for(directory: str, **overrides: Any) -> Any:
    settings = load_settings(env={}, overrides={"contracts.paths": [directory], **overrides})
    return build_contract_phase(settings)


@pytest.mark.parametrize(("classification", "policies", "overrides", "backend", "names"), [
    ("VVH", None, COMPLIANT, "https://b/x/{id}", "'geo-restriction', which Link cannot enforce"),
    ("H", None, {}, "https://b/x/{id}", "requires 'rate-limit' but no limit can apply"),
    ("H", None, {"ratelimit.enabled": False, "ratelimit.tenant_default": "1/s"}, "https://b/x/{id}",
     "requires 'rate-limit'"),
    ("VH", None, {"ratelimit.tenant_default": "1/s"}, "https://b/x/{id}", "requires 'audit-logging'"),
    ("VH", None, {"ratelimit.tenant_default": "1/s", "metering.enabled": False,
                  "metering.bootstrap_servers": "127.0.0.1:9"}, "https://b/x/{id}", "requires 'audit-logging'"),
    ("H", ["rate-limit", "auth-jwt", "data-encryption"], COMPLIANT, "http://b/x/{id}",
     "requires 'data-encryption' but backend http://b/x/{id} is plain http"),
    ("H", ["rate-limit", "auth-jwt", "ip-allowlist"], COMPLIANT, "https://b/x/{id}",
     "requires 'ip-allowlist', a policy Link does not know"),
])
def test_a_contract_link_cannot_keep_stops_start_up_naming_contract_and_policy(
    tmp_path: Path, classification: str, policies: list[str] | None, overrides: dict[str, Any], backend: str,
    names: str,
) -> None:
    directory = write_contract(tmp_path, classification, policies, backend)
    for mode in ("enforce", "observe"):  # observe softens validation, never what the caller owes
        with pytest.raises(ConfigError) as err:
            phase_for(directory, **{**overrides, "contracts.mode": mode})
        assert err.value.key == "contracts.paths"
        assert "contract 'billing-api'" in err.value.reason and names in err.value.reason


def test_a_limit_on_the_bound_route_is_enough_for_rate_limit(tmp_path: Path) -> None:
    directory = write_contract(tmp_path, "H")
    phase_for(directory, routes=[{"name": "inv", "prefix": "/invoices", "contract": "billing-api",
                                  "rate_limit": "10/min"}])
    phase_for(directory, **{"ratelimit.tenants": {"tenant-acme": "10/min"}})


def test_an_anonymous_route_bound_to_a_jwt_contract_stops_start_up(tmp_path: Path) -> None:
    directory = write_contract(tmp_path, "H")
    with pytest.raises(ConfigError) as err:
        phase_for(directory, **COMPLIANT, routes=[{"name": "inv", "prefix": "/invoices", "anonymous": True,
                                                   "contract": "billing-api"}])
    assert err.value.key == "routes[0].anonymous" and "requires auth-jwt" in err.value.reason


JWT = Principal(kind=CredentialKind.JWT, subject="alice", consumer="app", tenant="tenant-acme")
API_KEY = Principal(kind=CredentialKind.API_KEY, subject="app", consumer="app", tenant="tenant-acme")
MTLS = Principal(kind=CredentialKind.MTLS, subject="spiffe://acme/app", consumer="app", tenant="tenant-acme")
ANON = Principal(kind=CredentialKind.ANONYMOUS, subject="", consumer="", tenant="")
CERT = PeerIdentity(principal="spiffe://acme/app")


def ctx(principal: Principal, *, peer: PeerIdentity | None = None, scheme: str = "https", limited: bool = True,
        tool: bool = False, headers: dict[str, str] | None = None) -> RequestContext:
    if tool:
        request = Request(method="POST", path="/mcp/tools/get_invoice", headers=dict(headers or {}),
                          tool_name="get_invoice", tool_tenant="tenant-acme", scheme=scheme, peer=peer)
        route = RouteMatch(name="get_invoice", tenant="tenant-acme")
    else:
        request = Request(method="GET", path="/invoices/inv-1", headers=dict(headers or {}), scheme=scheme,
                          peer=peer)
        route = RouteMatch(name="inv", contract="billing-api")
    c = RequestContext(request=request, route=route, principal=principal)
    if limited:
        c.record.ratelimit_applied = True
    return c


# (classification, context, expected (status, reason) or None when allowed)
CASES: list[tuple[str, str, RequestContext, tuple[int, str] | None]] = []
for _tool in (False, True):
    _via = "mcp" if _tool else "http"
    CASES += [
        ("H", f"{_via}: jwt", ctx(JWT, tool=_tool), None),
        ("H", f"{_via}: api key", ctx(API_KEY, tool=_tool), (401, "contract_requires_jwt")),
        ("H", f"{_via}: client cert only", ctx(MTLS, peer=CERT, tool=_tool), (401, "contract_requires_jwt")),
        ("H", f"{_via}: anonymous", ctx(ANON, tool=_tool), (401, "contract_requires_jwt")),
        ("H", f"{_via}: jwt, no limit applied", ctx(JWT, limited=False, tool=_tool),
         (503, "contract_rate_limit_missing")),
        ("VH", f"{_via}: jwt without client cert", ctx(JWT, tool=_tool), (403, "contract_requires_mtls")),
        ("VH", f"{_via}: jwt over mTLS", ctx(JWT, peer=CERT, tool=_tool), None),
        ("VH", f"{_via}: api key over mTLS", ctx(API_KEY, peer=CERT, tool=_tool), (401, "contract_requires_jwt")),
        ("VH", f"{_via}: jwt, untrusted xfcc header", ctx(
            JWT, tool=_tool, headers={"x-forwarded-client-cert": "URI=spiffe://evil"}), (403, "contract_requires_mtls")),
    ]
TLS_CASES = [
    ("jwt over https", ctx(JWT), None),
    ("jwt over plain http", ctx(JWT, scheme="http"), (403, "contract_requires_tls")),
    ("mcp jwt over plain http", ctx(JWT, scheme="http", tool=True), (403, "contract_requires_tls")),
]


@pytest.mark.parametrize(("classification", "name", "context", "expected"), CASES, ids=[c[1] + f" ({c[0]})" for c in CASES])
async def test_required_policies_are_enforced_per_request(
    tmp_path: Path, classification: str, name: str, context: RequestContext, expected: tuple[int, str] | None
) -> None:
    phase = phase_for(write_contract(tmp_path, classification), **COMPLIANT)
    decision = await phase(context)
    if expected is None:
        assert decision is None
        return
    assert decision is not None
    assert (decision.http_status, decision.reason) == expected
    assert "billing-api" in decision.message
    assert context.record.contract == "billing-api"
    if decision.http_status == 401:
        assert decision.response_headers["www-authenticate"].startswith('Bearer realm="stoa", error="invalid_')


@pytest.mark.parametrize(("name", "context", "expected"), TLS_CASES, ids=[c[0] for c in TLS_CASES])
async def test_data_encryption_requires_tls(tmp_path: Path, name: str, context: RequestContext,
                                            expected: tuple[int, str] | None) -> None:
    directory = write_contract(tmp_path, "H", ["rate-limit", "auth-jwt", "data-encryption"])
    decision = await phase_for(directory, **COMPLIANT)(context)
    assert (None if decision is None else (decision.http_status, decision.reason)) == expected


async def test_a_trusted_xfcc_counts_as_a_client_certificate(tmp_path: Path) -> None:
    phase = phase_for(write_contract(tmp_path, "VH"), **COMPLIANT, **{"identity.mtls_trust_xfcc": True})
    assert await phase(ctx(JWT, headers={"x-forwarded-client-cert": "URI=spiffe://acme/app"})) is None


async def test_observe_mode_still_enforces_what_the_caller_owes(tmp_path: Path) -> None:
    phase = phase_for(write_contract(tmp_path, "H"), **COMPLIANT, **{"contracts.mode": "observe"})
    decision = await phase(ctx(API_KEY))
    assert decision is not None and decision.reason == "contract_requires_jwt"
