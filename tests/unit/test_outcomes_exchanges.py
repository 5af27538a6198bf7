"""Exchanges for error snapshots carry the caller's scopes and roles, whichever way they were captured."""

from __future__ import annotations

from link.events import HttpMessage
from link.model import CredentialKind, Decision, DecisionRecord, Outcome, Principal, Request, RequestContext, RouteMatch
from link.outcomes import refusal_exchange, response_exchange
from link.pipeline.base import PipelineResult
from link.snapshots import PiiMasker, SnapshotOrigin, build_snapshot

CALLER = Principal(kind=CredentialKind.JWT, subject="u-1", consumer="app", tenant="acme",
                   scopes=frozenset({"orders:write", "orders:read"}), roles=frozenset({"clerk"}))


def _ctx() -> RequestContext:
    request = Request(method="POST", path="/orders", headers={"x-request-id": "r-1"}, request_id="r-1")
    return RequestContext(request=request, route=RouteMatch(name="orders", tenant="acme"), principal=CALLER)


def test_a_refusal_snapshot_names_the_callers_scopes_and_roles() -> None:
    refused = Decision.deny(403, Outcome.POLICY_DENIED, "policy_denied", "no")
    ex = refusal_exchange(PipelineResult(decision=refused, ctx=_ctx()), body_cap=1024)
    doc = build_snapshot(ex, PiiMasker(), SnapshotOrigin(gateway_id="gw", instance="i", mode="sidecar"))
    assert doc["scopes"] == ["orders:read", "orders:write"] and doc["roles"] == ["clerk"]


def test_a_response_snapshot_takes_them_from_the_principal_or_else_the_record() -> None:
    message = HttpMessage(headers={})
    ex = response_exchange(_ctx(), DecisionRecord(), status=502, started=0.0, request=message, response=message)
    assert (ex.scopes, ex.roles) == (["orders:read", "orders:write"], ["clerk"])
    bare = RequestContext(request=_ctx().request, route=_ctx().route)  # ext_proc only saw Link's record
    record = DecisionRecord(scopes=("a", "b"), roles=("r",))
    ex = response_exchange(bare, record, status=502, started=0.0, request=message, response=message)
    assert (ex.scopes, ex.roles) == (["a", "b"], ["r"])
