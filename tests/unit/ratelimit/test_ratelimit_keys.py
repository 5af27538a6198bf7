"""Which buckets a request draws from."""

from __future__ import annotations

from link.model import ANONYMOUS, CredentialKind, Principal, Request, RequestContext, RouteMatch
from link.ratelimit.keys import LimitSelector
from link.rates import Rate
from link.settings import RateLimitSettings


def ctx(tenant: str = "", consumer: str = "app-1", route: RouteMatch | None = None,
        tool_tenant: str | None = None) -> RequestContext:
    principal = Principal(kind=CredentialKind.API_KEY, subject=consumer, consumer=consumer, tenant=tenant)
    req = Request(method="GET", path="/x", headers={}, tool_tenant=tool_tenant)
    return RequestContext(request=req, route=route, principal=principal)


def scopes(selector: LimitSelector, c: RequestContext) -> dict[str, tuple[str, Rate, int]]:
    return {lim.scope: (lim.key, lim.rate, lim.capacity) for lim in selector.select(c)}


def test_nothing_configured_means_no_buckets() -> None:
    assert LimitSelector(RateLimitSettings()).select(ctx("acme")) == ()


def test_tenant_override_wins_over_the_default() -> None:
    sel = LimitSelector(RateLimitSettings(tenant_default="100/min", tenants={"acme": "10/sec"}))
    assert scopes(sel, ctx("acme"))["tenant"] == ("{acme}:t", Rate(10, 1.0), 10)
    assert scopes(sel, ctx("globex"))["tenant"] == ("{globex}:t", Rate(100, 60.0), 100)


def test_consumer_buckets_are_per_consumer_within_the_tenant() -> None:
    sel = LimitSelector(RateLimitSettings(consumer_default="5/min", consumers={"vip": "50/min"}))
    assert scopes(sel, ctx("acme", "app-1"))["consumer"] == ("{acme}:c:app-1", Rate(5, 60.0), 5)
    assert scopes(sel, ctx("globex", "app-1"))["consumer"][0] == "{globex}:c:app-1"
    assert scopes(sel, ctx("acme", "vip"))["consumer"][1] == Rate(50, 60.0)


def test_route_limit_is_per_tenant_and_route() -> None:
    sel = LimitSelector(RateLimitSettings())
    route = RouteMatch(name="get-invoice", tenant="acme", rate_limit="100/min")
    assert scopes(sel, ctx("acme", route=route)) == {"route": ("{acme}:r:get-invoice", Rate(100, 60.0), 100)}


def test_all_applicable_limits_apply_together() -> None:
    sel = LimitSelector(RateLimitSettings(tenant_default="1000/min", consumer_default="100/min"))
    route = RouteMatch(name="r", rate_limit="10/sec")
    assert set(scopes(sel, ctx("acme", route=route))) == {"tenant", "consumer", "route"}


def test_tenant_comes_from_the_principal_else_the_route_else_the_tool() -> None:
    sel = LimitSelector(RateLimitSettings(tenant_default="1/sec"))
    anon = RequestContext(request=Request(method="GET", path="/", headers={}),
                          route=RouteMatch(name="pub", tenant="acme", anonymous=True), principal=ANONYMOUS)
    assert scopes(sel, anon)["tenant"][0] == "{acme}:t"
    assert scopes(sel, ctx("", tool_tenant="initech"))["tenant"][0] == "{initech}:t"
    assert scopes(sel, ctx(""))["tenant"][0] == "{-}:t"


def test_burst_factor_scales_capacity_not_rate() -> None:
    sel = LimitSelector(RateLimitSettings(tenant_default="10/min", burst_factor=2.5))
    assert scopes(sel, ctx("acme"))["tenant"][1:] == (Rate(10, 60.0), 25)


def test_a_bad_rate_on_a_tool_is_ignored_not_fatal() -> None:
    sel = LimitSelector(RateLimitSettings())
    assert sel.select(ctx("acme", route=RouteMatch(name="t", rate_limit="lots"))) == ()


def test_all_keys_of_a_request_share_one_hash_tag() -> None:
    sel = LimitSelector(RateLimitSettings(tenant_default="1/sec", consumer_default="1/sec"))
    keys = [lim.key for lim in sel.select(ctx("acme", route=RouteMatch(name="r", rate_limit="1/sec")))]
    assert len(keys) == 3 and all(k.startswith("{acme}:") for k in keys)
