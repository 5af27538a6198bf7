"""The built-in default policy: what a fresh install (policy on, no policy.paths) enforces.

Table-driven over the kinds of caller and the places they call: authenticated
callers pass, anonymous ones only on routes declared anonymous and for tools of
public MCP tenants; a configured policy that is missing or broken is never
replaced by the default (the phase stays not ready and says why).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from link.model import ANONYMOUS, CredentialKind, Principal, RequestContext, RouteMatch
from link.pipeline.policy import PolicyPhase, build_policy_phase
from link.policy.default import DEFAULT_QUERY, default_source
from link.policy.sources import SourceError
from link.settings import Settings, load_settings
from tests.unit.policy.support import make_ctx

ROUTES = [
    {"name": "health", "prefix": "/health", "anonymous": True},
    {"name": "invoices", "prefix": "/invoices"},
]


def _route(name: str, anonymous: bool) -> RouteMatch:
    return RouteMatch(name=name, tenant=None, api=name, template=f"/{name}", anonymous=anonymous, credentials=(),
                      required_scopes=(), rate_limit=None, contract=None, snapshots=False, path_params={})


def _phase() -> PolicyPhase:
    settings = load_settings(env={}, overrides={"policy.enabled": True, "mcp.public_tenants": "demo"})
    return build_policy_phase(Settings.model_validate({**settings.model_dump(), "routes": ROUTES}))


def _ctx(kind: str, *, route: str | None = None, tool_tenant: str | None = None) -> RequestContext:
    ctx = make_ctx(route=_route(route, route == "health") if route else None)
    if kind == "anonymous":
        ctx.principal = ANONYMOUS
    elif kind == "api_key":
        ctx.principal = Principal(kind=CredentialKind.API_KEY, subject="app", consumer="app", tenant="acme")
    if tool_tenant is not None:
        ctx.request.tool_name = "say-hello"
        ctx.request.tool_tenant = tool_tenant
    return ctx


def test_no_paths_loads_the_builtin_default_and_is_ready() -> None:
    phase = _phase()
    ready, detail = phase.readiness()
    assert ready, detail
    assert "builtin-default" in detail
    assert phase.policy is not None and phase.policy.query == DEFAULT_QUERY


@pytest.mark.parametrize(("caller", "route", "tool_tenant", "allowed"), [
    ("jwt", "invoices", None, True),
    ("api_key", "invoices", None, True),
    ("jwt", None, None, True),  # authenticated, no route matched
    ("jwt", None, "acme", True),  # an MCP tool call
    ("anonymous", "health", None, True),  # the route is declared anonymous
    ("anonymous", "invoices", None, False),  # not anonymous: refused even if identity let it pass
    ("anonymous", None, None, False),
    ("anonymous", None, "demo", True),  # a tool of a public MCP tenant
    ("anonymous", None, "acme", False),  # a tool of another tenant
])
async def test_default_policy_decisions(caller: str, route: str | None, tool_tenant: str | None,
                                        allowed: bool) -> None:
    phase = _phase()
    decision = await phase(_ctx(caller, route=route, tool_tenant=tool_tenant))
    if allowed:
        assert decision is None
    else:
        assert decision is not None and decision.http_status == 403 and decision.reason == "policy_denied"


@pytest.mark.parametrize(("paths", "text", "reason"), [
    (["missing.rego"], None, "does not exist"),
    (["broken.rego"], "package envoy.authz\nallow if {\n", "broken.rego"),
    (["empty"], None, "no policy (.rego) found"),  # a mounted ConfigMap without .rego files
])
def test_a_configured_policy_that_is_missing_or_broken_is_never_replaced(
        tmp_path: Path, paths: list[str], text: str | None, reason: str) -> None:
    (tmp_path / "empty").mkdir()
    if text is not None:
        (tmp_path / paths[0]).write_text(text)
    settings = load_settings(env={}, overrides={"policy.enabled": True,
                                                "policy.paths": [str(tmp_path / p) for p in paths]})
    phase = build_policy_phase(settings)
    ready, detail = phase.readiness()
    assert not ready
    assert detail.startswith("no policy loaded") and reason in detail


def test_another_query_without_paths_names_the_key() -> None:
    with pytest.raises(SourceError, match=r"policy\.paths"):
        default_source("data.acme.allow")
    phase = build_policy_phase(load_settings(env={}, overrides={"policy.query": "data.acme.allow"}))
    ready, detail = phase.readiness()
    assert not ready and "policy.paths" in detail and "data.acme.allow" in detail


def _entry_ctx(kind: str, entry: str, tenant: str) -> RequestContext:
    """An MCP resource read / prompt get as mcp_server.content builds it (the tenant is the route's)."""
    ctx = make_ctx(route=RouteMatch(name="e", tenant=tenant, api="e", template=f"/mcp/{entry}s/e",
                                    anonymous=tenant == "demo", credentials=(), required_scopes=(),
                                    rate_limit=None, contract=None, snapshots=False, path_params={}))
    ctx.request.context = {"entry": "mcp", "mcp_entry_kind": entry, "mcp_entry_name": "e",
                           "mcp_resource_uri": "docs://e"}
    if kind == "anonymous":
        ctx.principal = ANONYMOUS
    else:
        ctx.principal = Principal(kind=CredentialKind.API_KEY, subject="app", consumer="app", tenant="acme")
    return ctx


@pytest.mark.parametrize(("caller", "entry", "tenant", "allowed"), [
    ("anonymous", "resource", "demo", True),
    ("anonymous", "prompt", "demo", True),
    ("anonymous", "resource", "acme", False),
    ("anonymous", "prompt", "acme", False),
    ("api_key", "resource", "acme", True),
    ("api_key", "prompt", "acme", True),
])
async def test_default_policy_for_mcp_resources_and_prompts(caller: str, entry: str, tenant: str,
                                                            allowed: bool) -> None:
    decision = await _phase()(_entry_ctx(caller, entry, tenant))
    assert (decision is None) is allowed


def test_the_policy_input_carries_the_entry_at_stoa_resource_or_stoa_prompt() -> None:
    from link.policy.inputdoc import build_input

    doc = build_input(_entry_ctx("api_key", "resource", "acme"))
    assert doc["stoa"]["resource"] == {"name": "e", "tenant": "acme", "uri": "docs://e", "variables": {}}
    assert doc["stoa"]["tool"] is None and "prompt" not in doc["stoa"]
    ctx = _entry_ctx("api_key", "prompt", "acme")
    ctx.request.arguments = {"topic": "billing"}
    assert build_input(ctx)["stoa"]["prompt"] == {"name": "e", "tenant": "acme", "arguments": {"topic": "billing"}}
