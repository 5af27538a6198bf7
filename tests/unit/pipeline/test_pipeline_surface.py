"""The pipeline's public surface: run, identify, run_with_principal, permits, check_body.

Real phases (identity with an API-key file, response) with small stand-ins only where a phase's
verdict is the variable under test (a policy that refuses or crashes, a body check).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from link.identity.apikeys import hash_api_key
from link.model import ANONYMOUS, CredentialKind, Decision, Outcome, Principal, Request, RequestContext, RouteMatch
from link.pipeline.base import Phase, Pipeline
from link.pipeline.identity import IdentityPhase
from link.pipeline.response import ResponsePhase
from link.routes import RouteTable
from link.settings import Settings, load_settings

KEY = "key-acme"
ACME = Principal(kind=CredentialKind.API_KEY, subject="acme-app", consumer="acme-app", tenant="tenant-acme",
                 scopes=frozenset({"tools"}))


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    keys = tmp_path / "keys.yaml"
    keys.write_text(json.dumps({hash_api_key(KEY): {"tenant": "tenant-acme", "consumer": "acme-app",
                                                    "scopes": ["tools"]}}))
    return load_settings(env={}, overrides={"identity.api_keys_file": str(keys), **overrides})


class CountingIdentity(IdentityPhase):
    """The real identity phase, counting how often it authenticates a request."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.authentications = 0

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        self.authentications += 1
        return await super().__call__(ctx)


class Policy:
    """A policy stand-in: refuses one tool, crashes on another; records the principal it saw."""

    name = "policy"

    def __init__(self) -> None:
        self.seen: list[Principal] = []

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        self.seen.append(ctx.principal)
        if ctx.request.tool_name == "crash":
            raise RuntimeError("policy bug")
        if ctx.request.tool_name == "secret":
            return Decision.deny(403, Outcome.POLICY_DENIED, "denied", "not for you")
        return None


class BodyCheck:
    """A body check stand-in with the contract phase's shape: refuses bodies containing ``bad``."""

    name = "contract"

    def __init__(self, limit: int, crash: bool = False) -> None:
        self.limit = limit
        self.crash = crash
        self.seen: list[bytes] = []

    @property
    def max_body_bytes(self) -> int:
        return self.limit

    async def __call__(self, ctx: RequestContext) -> Decision | None:
        self.seen.append(ctx.request.body or b"")
        if self.crash:
            raise ValueError("contract bug")
        if ctx.request.body_truncated:
            ctx.record.contract_body = "unavailable"
            return None
        if len(ctx.request.body or b"") > self.limit:
            return Decision.deny(413, Outcome.INVALID, "body_too_large", "too large")
        if b"bad" in (ctx.request.body or b""):
            return Decision.deny(422, Outcome.INVALID, "contract_violation", "bad body")
        return None


def _pipeline(settings: Settings, *extra: Phase) -> tuple[Pipeline, CountingIdentity]:
    identity = CountingIdentity(settings)
    return Pipeline(RouteTable(settings.routes), [identity, *extra], ResponsePhase(settings.identity)), identity


def _request(path: str = "/mcp/tools/echo", key: str | None = KEY, tool: str | None = "echo") -> Request:
    return Request(method="POST", path=path, headers={"x-api-key": key} if key else {}, tool_name=tool)


TOOL_ROUTE = RouteMatch(name="echo", tenant="tenant-acme", api="echo", template="/mcp/tools/echo")


# -- run_with_principal: the route's rules, applied to a known caller, never a second authentication --

@pytest.mark.parametrize(
    ("principal", "route", "status", "reason", "admitted"),
    [
        (ACME, TOOL_ROUTE, 200, "", ACME),
        (ACME, RouteMatch(name="pub", anonymous=True), 200, "", ANONYMOUS),
        (ANONYMOUS, RouteMatch(name="pub", anonymous=True), 200, "", ANONYMOUS),
        (ANONYMOUS, TOOL_ROUTE, 401, "missing_credentials", None),
        (ANONYMOUS, RouteMatch(name="opt", optional_identity=True), 200, "", ANONYMOUS),
        (ACME, RouteMatch(name="scoped", required_scopes=("admin",)), 403, "insufficient_scope", None),
        (ACME, RouteMatch(name="scoped", required_scopes=("tools",)), 200, "", ACME),
        (ACME, RouteMatch(name="jwt-only", credentials=(CredentialKind.JWT,)), 401, "missing_credentials", None),
    ],
    ids=["tenant-route", "anonymous-route", "anonymous-on-anonymous", "anonymous-on-protected",
         "optional-identity", "missing-scope", "granted-scope", "kind-not-accepted"],
)
async def test_run_with_principal_admits_under_the_route_without_authenticating(
    tmp_path: Path, principal: Principal, route: RouteMatch, status: int, reason: str,
    admitted: Principal | None,
) -> None:
    pipeline, identity = _pipeline(_settings(tmp_path))
    run = await pipeline.run_with_principal(_request(), principal, route)
    assert identity.authentications == 0
    assert run.decision.http_status == status if not run.decision.allowed else status == 200
    assert run.decision.reason == reason
    if admitted is not None:
        assert run.decision.allowed and run.ctx.principal == admitted
    else:
        body = json.loads(run.decision.body or b"{}")  # a refusal is finished like any other
        assert body["request_id"] == run.ctx.request.request_id and body["reason"]
        assert "www-authenticate" in run.decision.response_headers


async def test_run_authenticates_once_and_run_with_principal_never(tmp_path: Path) -> None:
    pipeline, identity = _pipeline(_settings(tmp_path))
    assert (await pipeline.run(_request())).decision.allowed  # unrouted: the default credential kinds
    assert identity.authentications == 1
    identified = await pipeline.identify(_request(), TOOL_ROUTE)
    assert identified.principal is not None and identified.principal.tenant == "tenant-acme"
    assert identity.authentications == 2
    await pipeline.run_with_principal(_request(), identified.principal, TOOL_ROUTE)
    assert identity.authentications == 2


async def test_run_with_principal_ignores_settings_routes(tmp_path: Path) -> None:
    """MCP traffic is routed by its registry entry: a data-plane route on the same path does not apply."""
    routes = [{"name": "locked", "prefix": "/mcp", "required_scopes": ["never-granted"]}]
    pipeline, _ = _pipeline(_settings(tmp_path, routes=routes))
    data_plane = await pipeline.run(_request())
    assert (data_plane.decision.http_status, data_plane.decision.reason) == (403, "insufficient_scope")
    assert data_plane.ctx.route is not None and data_plane.ctx.route.name == "locked"
    mcp = await pipeline.run_with_principal(_request(), ACME, TOOL_ROUTE)
    assert mcp.decision.allowed and mcp.ctx.route is TOOL_ROUTE


async def test_run_with_principal_still_refuses_an_ambiguous_path(tmp_path: Path) -> None:
    pipeline, _ = _pipeline(_settings(tmp_path))
    run = await pipeline.run_with_principal(_request(path="/mcp/tools/a%2Fb"), ACME, TOOL_ROUTE)
    assert (run.decision.http_status, run.decision.reason) == (400, "path_encoded_slash")


async def test_later_phases_see_the_admitted_principal(tmp_path: Path) -> None:
    policy = Policy()
    pipeline, _ = _pipeline(_settings(tmp_path), policy)
    await pipeline.run_with_principal(_request(), ACME, TOOL_ROUTE)
    assert policy.seen == [ACME]


# -- identify -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "reason"), [(None, "missing_credentials"), ("wrong", "invalid_api_key")])
async def test_identify_returns_the_phase_refusal(tmp_path: Path, key: str | None, reason: str) -> None:
    pipeline, _ = _pipeline(_settings(tmp_path))
    identified = await pipeline.identify(_request(key=key), TOOL_ROUTE)
    assert identified.principal is None and identified.refusal is not None
    assert (identified.refusal.http_status, identified.refusal.reason) == (401, reason)


async def test_identify_without_an_identity_phase_is_503(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    pipeline = Pipeline(RouteTable([]), [], ResponsePhase(s.identity))
    identified = await pipeline.identify(_request(), TOOL_ROUTE)
    assert identified.refusal is not None and identified.refusal.http_status == 503


# -- permits: the policy alone --------------------------------------------------------------------

@pytest.mark.parametrize(("tool", "visible"), [("echo", True), ("secret", False), ("crash", False)])
async def test_permits_is_the_policy_alone(tmp_path: Path, tool: str, visible: bool) -> None:
    policy = Policy()
    pipeline, identity = _pipeline(_settings(tmp_path), policy)
    assert pipeline.authorizes
    ctx = RequestContext(request=_request(tool=tool), route=TOOL_ROUTE)
    assert await pipeline.permits(ctx, ACME) is visible
    assert policy.seen == [ACME] and identity.authentications == 0


async def test_permits_everything_without_a_policy(tmp_path: Path) -> None:
    pipeline, _ = _pipeline(_settings(tmp_path))
    assert not pipeline.authorizes
    assert await pipeline.permits(RequestContext(request=_request(tool="secret")), ACME)


# -- check_body -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("body", "complete", "status"),
    [
        (b'{"ok":1}', True, None),
        (b'{"bad":1}', True, 422),
        (b"x" * 17, True, 413),  # over the limit: the check sees limit + 1 bytes and answers 413
        (b"x" * 10, False, 413),  # a governed body not seen whole is refused, never passed
    ],
    ids=["passes", "violates", "over-limit", "partial"],
)
async def test_check_body(tmp_path: Path, body: bytes, complete: bool, status: int | None) -> None:
    check = BodyCheck(limit=16)
    pipeline, _ = _pipeline(_settings(tmp_path), check)
    assert pipeline.checks_bodies
    ctx = RequestContext(request=_request(), route=TOOL_ROUTE)
    decision = await pipeline.check_body(ctx, body, complete=complete)
    assert check.seen == [body[:17]]
    if status is None:
        assert decision is None
    else:
        assert decision is not None and decision.http_status == status
        assert json.loads(decision.body or b"{}")["request_id"] == ctx.request.request_id
        assert "contract_body" in ctx.timings_ns


async def test_check_body_crash_is_a_finished_500(tmp_path: Path) -> None:
    pipeline, _ = _pipeline(_settings(tmp_path), BodyCheck(limit=16, crash=True))
    ctx = RequestContext(request=_request(), route=TOOL_ROUTE)
    decision = await pipeline.check_body(ctx, b"{}", complete=True)
    assert decision is not None and decision.http_status == 500
    assert json.loads(decision.body or b"{}")["error"] == "internal_error"
    assert ctx.record.error == "contract: ValueError"


async def test_no_body_check_without_contracts(tmp_path: Path) -> None:
    pipeline, _ = _pipeline(_settings(tmp_path))
    assert not pipeline.checks_bodies
    assert await pipeline.check_body(RequestContext(request=_request()), b"bad", complete=True) is None


# -- run: a crashing phase, a crashing observer --------------------------------------------------

class _Observer:
    def __init__(self) -> None:
        self.count = 0

    def observe(self, ctx: RequestContext, decision: Decision) -> None:
        self.count += 1
        raise RuntimeError("observer bug")


async def test_a_crashing_phase_is_a_500_json_and_a_crashing_observer_is_swallowed(tmp_path: Path) -> None:
    s = _settings(tmp_path, routes=[{"name": "pub", "prefix": "/", "anonymous": True}])
    observer = _Observer()
    pipeline = Pipeline(RouteTable(s.routes), [CountingIdentity(s), BodyCheck(limit=1, crash=True)],
                        ResponsePhase(s.identity), [observer])
    run = await pipeline.run(_request(key=None))
    assert run.decision.http_status == 500
    assert json.loads(run.decision.body or b"{}") == {
        "error": "internal_error", "reason": "internal error", "request_id": run.ctx.request.request_id}
    assert observer.count == 1
