"""OPA-Envoy-style policies, unchanged, give the decisions OPA-Envoy documents for them.

The policies follow the OPA-Envoy primer and common OPA-Envoy deployments: RBAC by
path and method, claims read with io.jwt.decode, header checks, parsed_path /
parsed_query / parsed_body, rego v0 syntax with ``import input.… as``.
"""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from tests.unit.policy.support import make_ctx, make_phase

PARSED_PATH = """
package envoy.authz

import rego.v1

default allow := false

allow if input.parsed_path == ["people"]
"""

PARSED_QUERY = """
package envoy.authz

import rego.v1

default allow := false

allow if {
	input.parsed_path == ["people"]
	input.parsed_query.lang == ["en"]
	input.parsed_query.id == ["1", "2"]
}
"""

PARSED_BODY = """
package envoy.authz

import rego.v1

default allow := false

allow if {
	input.attributes.request.http.method == "POST"
	input.parsed_path == ["people"]
	input.parsed_body.firstname == "Charlie"
}
"""

# Rego v0 syntax, as most OPA-Envoy policies in the field are still written.
RBAC_V0 = """
package envoy.authz

import input.attributes.request.http as http_request

default allow = false

allow {
	http_request.method == "GET"
	glob.match("/people/*", ["/"], http_request.path)
}

allow {
	http_request.method == "POST"
	http_request.path == "/people"
	input.stoa.principal.roles[_] == "admin"
}
"""

JWT_CLAIMS = """
package envoy.authz

import rego.v1

import input.attributes.request.http

default allow := false

allow if {
	http.method == "GET"
	claims.role == "guest"
	glob.match("/people/*", ["/"], http.path)
}

allow if {
	http.method == "POST"
	claims.role == "admin"
	glob.match("/people", ["/"], http.path)
}

claims := payload if {
	[_, encoded] := split(http.headers.authorization, " ")
	[_, payload, _] := io.jwt.decode(encoded)
}
"""

JWT_VERIFY = """
package envoy.authz

import rego.v1

default allow := false

allow if {
	[_, encoded] := split(input.attributes.request.http.headers.authorization, " ")
	[valid, _, payload] := io.jwt.decode_verify(encoded, {"secret": "a-shared-secret-of-at-least-32-bytes"})
	valid
	payload.role == "admin"
}
"""

HEADERS = """
package envoy.authz

import rego.v1

default allow := false

allow if {
	input.attributes.request.http.headers["x-api-version"] == "v2"
	not input.attributes.request.http.headers["x-debug"]
	startswith(input.attributes.source.address.socketAddress.address, "10.")
}
"""

TENANT = """
package envoy.authz

import rego.v1

default allow := false

# Link's own input: a caller only reaches the routes of its tenant.
allow if input.stoa.principal.tenant == input.stoa.route.tenant
"""


def _token(claims: dict[str, object], key: str = "a-shared-secret-of-at-least-32-bytes") -> str:
    return jwt.encode(claims, key, algorithm="HS256")


CASES = [
    # (policy, method, path, query, headers, body, roles, tenant-of-route, expected allow)
    (PARSED_PATH, "GET", "/people", "", {}, None, (), None, True),
    (PARSED_PATH, "GET", "/people/1", "", {}, None, (), None, False),
    (PARSED_PATH, "GET", "/", "", {}, None, (), None, False),
    (PARSED_QUERY, "GET", "/people", "lang=en&id=1&id=2", {}, None, (), None, True),
    (PARSED_QUERY, "GET", "/people", "lang=fr&id=1&id=2", {}, None, (), None, False),
    (PARSED_QUERY, "GET", "/people", "lang=en&id=1", {}, None, (), None, False),
    (PARSED_BODY, "POST", "/people", "", {}, b'{"firstname": "Charlie", "lastname": "Opa"}', (), None, True),
    (PARSED_BODY, "POST", "/people", "", {}, b'{"firstname": "Bob"}', (), None, False),
    (PARSED_BODY, "POST", "/people", "", {}, None, (), None, False),  # no body forwarded
    (RBAC_V0, "GET", "/people/42", "", {}, None, (), None, True),
    (RBAC_V0, "GET", "/people", "", {}, None, (), None, False),
    (RBAC_V0, "DELETE", "/people/42", "", {}, None, ("admin",), None, False),
    (RBAC_V0, "POST", "/people", "", {}, b"{}", ("admin",), None, True),
    (RBAC_V0, "POST", "/people", "", {}, b"{}", ("reader",), None, False),
    (HEADERS, "GET", "/x", "", {"x-api-version": "v2"}, None, (), None, True),
    (HEADERS, "GET", "/x", "", {"x-api-version": "v1"}, None, (), None, False),
    (HEADERS, "GET", "/x", "", {"x-api-version": "v2", "x-debug": "1"}, None, (), None, False),
]


@pytest.mark.parametrize(("policy", "method", "path", "query", "headers", "body", "roles", "route_tenant",
                          "expected"), CASES)
async def test_documented_decisions(tmp_path: Path, policy: str, method: str, path: str, query: str,
                                    headers: dict[str, str], body: bytes | None, roles: tuple[str, ...],
                                    route_tenant: str | None, expected: bool) -> None:
    phase = make_phase(tmp_path, policy)
    ctx = make_ctx(method, path, query=query, headers=headers, body=body, roles=roles)
    decision = await phase(ctx)
    assert (decision is None) is expected
    if not expected:
        assert decision is not None
        assert decision.http_status == 403
        assert decision.outcome.value == "policy_denied"


@pytest.mark.parametrize(("role", "method", "path", "expected"), [
    ("guest", "GET", "/people/7", True),
    ("guest", "POST", "/people", False),
    ("admin", "POST", "/people", True),
    ("admin", "GET", "/orders/7", False),
])
async def test_claims_from_io_jwt_decode(tmp_path: Path, role: str, method: str, path: str,
                                         expected: bool) -> None:
    phase = make_phase(tmp_path, JWT_CLAIMS)
    token = _token({"role": role, "sub": "YWxpY2U=", "exp": int(time.time()) + 600})
    decision = await phase(make_ctx(method, path, headers={"authorization": f"Bearer {token}"}))
    assert (decision is None) is expected


async def test_claims_policy_without_token_is_refused(tmp_path: Path) -> None:
    phase = make_phase(tmp_path, JWT_CLAIMS)
    assert await phase(make_ctx("GET", "/people/7")) is not None


async def test_io_jwt_decode_verify_checks_the_signature(tmp_path: Path) -> None:
    phase = make_phase(tmp_path, JWT_VERIFY)
    good = _token({"role": "admin", "exp": int(time.time()) + 600})
    forged = _token({"role": "admin", "exp": int(time.time()) + 600},
                    key="another-secret-that-is-32-bytes-long")
    assert await phase(make_ctx(headers={"authorization": f"Bearer {good}"})) is None
    assert await phase(make_ctx(headers={"authorization": f"Bearer {forged}"})) is not None
    # decode_verify reads the clock: such a policy is never cached.
    assert phase.policy is not None and phase.policy.cache_size == 0


async def test_stoa_input_carries_principal_and_route(tmp_path: Path) -> None:
    from link.model import RouteMatch

    phase = make_phase(tmp_path, TENANT)
    same = make_ctx(tenant="acme", route=RouteMatch(name="billing", tenant="acme"))
    other = make_ctx(tenant="globex", route=RouteMatch(name="billing", tenant="acme"))
    assert await phase(same) is None
    assert await phase(other) is not None


OBJECT_DECISION = """
package envoy.authz

import rego.v1

default allow := false

allow if input.attributes.request.http.method == "GET"

headers["x-ext-auth-allow"] := "yes"
headers["x-validated-by"] := "security-checkpoint"

request_headers_to_remove := ["one-auth-header", "another-auth-header"]

response_headers_to_add["x-foo"] := "bar"

status_code := 200 if allow else := 401 if {
	not input.attributes.request.http.headers.authorization
} else := 403

body := "Authentication Failed" if status_code == 401
body := "Unauthorized Request" if status_code == 403

dynamic_metadata := {"checked_by": "opa"}

result["allowed"] := allow
result["headers"] := headers
result["response_headers_to_add"] := response_headers_to_add
result["request_headers_to_remove"] := request_headers_to_remove
result["body"] := body
result["http_status"] := status_code
result["dynamic_metadata"] := dynamic_metadata
"""


async def test_object_decision_allowed_maps_headers_and_metadata(tmp_path: Path) -> None:
    phase = make_phase(tmp_path, OBJECT_DECISION, query="data.envoy.authz.result")
    ctx = make_ctx("GET", "/people")
    assert await phase(ctx) is None
    assert ctx.policy is not None
    assert ctx.policy.upstream_headers == [("x-ext-auth-allow", "yes"), ("x-validated-by", "security-checkpoint")]
    assert ctx.policy.response_headers == [("x-foo", "bar")]
    assert ctx.remove_headers == ["one-auth-header", "another-auth-header"]
    assert ctx.policy.metadata == {"checked_by": "opa"}
    assert len(ctx.record.decision_id) == 32
    assert ctx.decision_id == ctx.record.decision_id


@pytest.mark.parametrize(("headers", "status", "body"), [
    ({}, 401, b"Authentication Failed"),
    ({"authorization": "Bearer x"}, 403, b"Unauthorized Request"),
])
async def test_object_decision_refused_uses_status_body_and_headers(
        tmp_path: Path, headers: dict[str, str], status: int, body: bytes) -> None:
    phase = make_phase(tmp_path, OBJECT_DECISION, query="data.envoy.authz.result")
    decision = await phase(make_ctx("POST", "/people", headers=headers))
    assert decision is not None
    assert decision.http_status == status
    assert decision.body == body and decision.policy_response
    assert decision.policy is not None and ("x-ext-auth-allow", "yes") in decision.policy.response_headers
    assert decision.outcome.value == "policy_denied"


EXAMPLES = str(Path(__file__).resolve().parents[3] / "examples" / "contracts")

CONTRACT_AWARE = """
package envoy.authz

import rego.v1

default allow := false

# Agents may call what the contract marks safe; destructive calls need a human-approval role.
allow if input.stoa.contract.endpoint.side_effects in {"read", "write"}

allow if {
	input.stoa.contract.endpoint.requires_human_approval
	"approver" in input.stoa.principal.roles
}
"""


@pytest.mark.parametrize(("method", "path", "roles", "expected"), [
    ("GET", "/invoices/7", (), True),
    ("DELETE", "/invoices/7", (), False),
    ("DELETE", "/invoices/7", ("approver",), True),
    ("GET", "/unknown", (), False),
])
async def test_input_carries_the_contract_endpoint(tmp_path: Path, method: str, path: str,
                                                   roles: tuple[str, ...], expected: bool) -> None:
    from link.pipeline.policy import build_policy_phase
    from link.settings import load_settings

    rego = tmp_path / "p.rego"
    rego.write_text(CONTRACT_AWARE)
    settings = load_settings(env={}, overrides={"policy.paths": [str(rego)], "contracts.paths": [EXAMPLES]})
    phase = build_policy_phase(settings)
    assert (await phase(make_ctx(method, path, roles=roles)) is None) is expected
