"""The identity phase: routes, credential kinds, scopes, refusals, cache, and the pipeline around it."""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from link.identity.cache import VerifiedTokenCache
from link.identity.metrics import REFUSALS, TOKEN_CACHE
from link.model import ANONYMOUS, CredentialKind, Outcome, Principal, Request, RouteMatch
from link.pipeline.base import Pipeline
from link.pipeline.identity import IdentityPhase
from link.pipeline.response import ResponsePhase
from link.routes import RouteTable
from tests.unit.identity.support import IdpDouble, PhaseFactory, bearer, ctx_for, identity_settings


async def test_no_credentials_is_401_invalid_request(make_phase: PhaseFactory) -> None:
    before = REFUSALS.labels("missing_credentials")._value.get()
    decision = await make_phase()(ctx_for())
    assert decision is not None
    assert (decision.http_status, decision.outcome, decision.reason) == (
        401,
        Outcome.UNAUTHENTICATED,
        "missing_credentials",
    )
    assert decision.response_headers["www-authenticate"] == (
        'Bearer realm="stoa", error="invalid_request", error_description="missing credentials"'
    )
    assert REFUSALS.labels("missing_credentials")._value.get() == before + 1


async def test_request_without_route_is_not_anonymous(idp: IdpDouble, make_phase: PhaseFactory) -> None:
    ctx = ctx_for()
    ctx.route = None
    assert await make_phase()(ctx) is not None
    ctx = ctx_for(bearer(idp.issuer.token()))
    ctx.route = None
    assert await make_phase()(ctx) is None and ctx.principal.kind is CredentialKind.JWT


async def test_anonymous_route_needs_nothing(make_phase: PhaseFactory) -> None:
    for route in (
        RouteMatch(name="public", anonymous=True),
        RouteMatch(name="public", credentials=(CredentialKind.ANONYMOUS,)),
    ):
        ctx = ctx_for(bearer("garbage"), route=route)
        assert await make_phase()(ctx) is None
        assert ctx.principal is ANONYMOUS


async def test_authorization_header_shapes(idp: IdpDouble, make_phase: PhaseFactory) -> None:
    phase = make_phase()
    token = idp.issuer.token()
    assert await phase(ctx_for({"authorization": f"bearer   {token} "})) is None
    basic = await phase(ctx_for({"authorization": "Basic dXNlcjpwYXNz"}))
    assert basic is not None and basic.reason == "missing_credentials"
    for bad in ("Bearer", "Bearer ", f"Bearer {token} extra"):
        d = await phase(ctx_for({"authorization": bad}))
        assert d is not None and (d.http_status, d.reason) == (401, "malformed_authorization")
        assert 'error="invalid_request"' in d.response_headers["www-authenticate"]


async def test_required_scopes_give_403_insufficient_scope(idp: IdpDouble, make_phase: PhaseFactory) -> None:
    route = RouteMatch(name="invoices", required_scopes=("invoices:read", "invoices:write"))
    phase = make_phase()
    d = await phase(ctx_for(bearer(idp.issuer.token(scope="openid invoices:read")), route=route))
    assert d is not None
    assert (d.http_status, d.outcome, d.reason) == (403, Outcome.POLICY_DENIED, "insufficient_scope")
    assert d.response_headers["www-authenticate"] == (
        'Bearer realm="stoa", error="insufficient_scope", error_description="insufficient scope", '
        'scope="invoices:read invoices:write"'
    )
    ctx = ctx_for(bearer(idp.issuer.token(scp=["invoices:read", "invoices:write"])), route=route)
    assert await phase(ctx) is None and ctx.principal.scopes == {"invoices:read", "invoices:write"}


async def test_require_tenant(idp: IdpDouble, make_phase: PhaseFactory) -> None:
    token = idp.issuer.token(azp="crm")
    d = await make_phase(require_tenant=True)(ctx_for(bearer(token)))
    assert d is not None and d.reason == "no_tenant"
    ctx = ctx_for(bearer(token))
    assert await make_phase(require_tenant=True, consumer_tenants={"crm": "globex"})(ctx) is None
    assert ctx.principal.tenant == "globex"


async def test_repeat_call_is_served_from_the_cache_until_the_token_expires(idp: IdpDouble) -> None:
    now = [time.time()]
    phase = IdentityPhase(identity_settings(), transport=idp.transport, clock=lambda: now[0])
    token = idp.issuer.token(exp=int(now[0]) + 60)
    hits = TOKEN_CACHE.labels("hit")
    assert await phase(ctx_for(bearer(token))) is None
    before = hits._value.get()
    idp.issuer.rotate(keep_old=False)  # even with its key gone, the verified token is not re-verified
    for _ in range(3):
        assert await phase(ctx_for(bearer(token))) is None
    assert hits._value.get() == before + 3
    now[0] += 60 + 31  # past exp + leeway: the entry is gone and the token re-checked
    d = await phase(ctx_for(bearer(token)))
    assert d is not None and d.http_status == 401


def test_token_cache_is_bounded_lru() -> None:
    cache = VerifiedTokenCache(2, max_age_s=100)
    p = Principal(kind=CredentialKind.JWT, subject="s", consumer="c", tenant="t")
    cache.put(b"a", p, 50.0, now=0)
    cache.put(b"b", p, None, now=0)
    assert cache.get(b"a", now=1) is p  # a is now the most recent
    cache.put(b"c", p, 50.0, now=1)
    assert cache.get(b"b", now=1) is None and len(cache) == 2
    assert cache.get(b"a", now=50) is None  # expired with its token
    assert VerifiedTokenCache(0).get(b"x", 0) is None


def pipeline_for(idp: IdpDouble, routes: list[dict[str, Any]], **identity: Any) -> Pipeline:
    s = identity_settings(**identity)
    from link.settings import RouteSettings

    return Pipeline(
        RouteTable([RouteSettings(**r) for r in routes]),
        [IdentityPhase(s, transport=idp.transport)],
        ResponsePhase(s.identity),
    )


async def test_pipeline_sends_principal_headers_and_strips_spoofed_ones(idp: IdpDouble) -> None:
    pipeline = pipeline_for(
        idp, [{"name": "health", "prefix": "/health", "anonymous": True}, {"name": "api", "prefix": "/"}]
    )
    headers = {
        **bearer(idp.issuer.token(sub="alice", azp="billing-app", tenant="acme")),
        "x-stoa-tenant": "evil",
        "x-stoa-admin": "yes",
    }
    d = await pipeline.decide(Request(method="GET", path="/invoices", headers=headers))
    assert d.allowed
    assert d.upstream_headers["x-stoa-tenant"] == "acme"
    assert (d.upstream_headers["x-stoa-consumer"], d.upstream_headers["x-stoa-subject"]) == (
        "billing-app",
        "alice",
    )
    assert "x-stoa-admin" in d.remove_headers
    assert d.record.credential == "jwt"

    d = await pipeline.decide(Request(method="GET", path="/health", headers={}))
    assert d.allowed
    d = await pipeline.decide(Request(method="GET", path="/invoices", headers={"x-stoa-tenant": "acme"}))
    assert (d.allowed, d.http_status) == (False, 401)
    body = json.loads(d.body or b"{}")
    assert body["error"] == "unauthorized" and set(body) == {"error", "reason", "request_id"}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    authorization=st.one_of(
        st.text(max_size=300),
        st.builds(lambda s: "Bearer " + s, st.text(max_size=300)),
        st.builds(lambda a, b, c: f"Bearer {a}.{b}.{c}", *(st.text("abc-_=+/!é", max_size=40),) * 3),
    ),
    api_key=st.one_of(st.none(), st.text(max_size=100)),
)
async def test_no_input_makes_the_phase_fail(
    idp: IdpDouble, make_phase: PhaseFactory, authorization: str, api_key: str | None
) -> None:
    headers = {"authorization": authorization}
    if api_key is not None:
        headers["x-api-key"] = api_key
    d = await make_phase()(ctx_for(headers))
    assert d is not None and d.http_status == 401 and d.outcome is Outcome.UNAUTHENTICATED
    assert d.response_headers["www-authenticate"].startswith('Bearer realm="stoa", error="invalid_')
