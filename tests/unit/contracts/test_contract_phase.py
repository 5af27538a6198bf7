"""Requests checked against a UAC contract: valid call, missing field, wrong type, unknown path, big body."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from link.model import CredentialKind, Decision, Principal, Request, RequestContext, RouteMatch
from link.pipeline.contract import ContractPhase, build_contract_phase
from link.settings import ConfigError, load_settings

EXAMPLE = str(Path(__file__).resolve().parents[3] / "examples" / "contracts")


# The example contract is classification H (rate-limit, auth-jwt): a limit must be able to apply.
LIMITED = {"ratelimit.tenant_default": "1000/min"}
JWT_CALLER = Principal(kind=CredentialKind.JWT, subject="alice", consumer="billing-app", tenant="tenant-acme")


def _phase(**contracts: object) -> ContractPhase:
    overrides = {"contracts.paths": [EXAMPLE], **LIMITED, **{f"contracts.{k}": v for k, v in contracts.items()}}
    return build_contract_phase(load_settings(env={}, overrides=overrides))


def _ctx(method: str, path: str, *, query: str = "", body: bytes | None = None, bound: str | None = "billing",
         headers: dict[str, str] | None = None) -> RequestContext:
    hdrs = dict(headers or {})
    if body is not None:
        hdrs.setdefault("content-type", "application/json")
        hdrs.setdefault("content-length", str(len(body)))
    route = RouteMatch(name="billing", contract=bound) if bound else None
    ctx = RequestContext(request=Request(method=method, path=path, headers=hdrs, query=query, body=body),
                         route=route, principal=JWT_CALLER)
    ctx.record.ratelimit_applied = True  # as the rate-limit phase, which runs before, leaves it
    return ctx


async def _decide(phase: ContractPhase, ctx: RequestContext) -> Decision | None:
    return await phase(ctx)


async def test_valid_calls_pass_and_are_marked() -> None:
    phase = _phase()
    ctx = _ctx("GET", "/invoices/42", query="expand=lines")
    assert await _decide(phase, ctx) is None
    assert ctx.record.contract == "billing" and ctx.record.operation_id == "getInvoice"
    body = json.dumps({"customer": "acme", "amount": 12.5, "currency": "EUR"}).encode()
    assert await _decide(phase, _ctx("POST", "/invoices", body=body)) is None


@pytest.mark.parametrize(("method", "path", "query", "body", "status", "message"), [
    ("POST", "/invoices", "", b'{"customer": "acme"}', 422, "amount: is required"),
    ("POST", "/invoices", "", b'{"customer": "acme", "amount": "12"}', 422, "amount: expected number, got string"),
    ("POST", "/invoices", "", b'{"customer": "acme", "amount": 1, "x": 1}', 422, "x: is not allowed"),
    ("POST", "/invoices", "", b'{"customer": ', 400, "body: not valid JSON"),
    ("POST", "/invoices", "", b"[1, 2]", 422, "body: expected a JSON object, got array"),
    ("GET", "/invoices/abc", "", None, 400, "invoiceId: expected integer, got string"),
    ("GET", "/invoices/0", "", None, 400, "invoiceId: 0 is less than the minimum of 1"),
    ("GET", "/invoices/7", "expand=everything", None, 400, 'expand: must be one of ["lines", "customer"]'),
])
async def test_violations_name_the_field_and_the_reason(method: str, path: str, query: str, body: bytes | None,
                                                        status: int, message: str) -> None:
    ctx = _ctx(method, path, query=query, body=body)
    decision = await _decide(_phase(), ctx)
    assert decision is not None
    assert (decision.http_status, decision.message) == (status, message)
    assert decision.outcome.value == "invalid"
    assert ctx.record.contract_violation == message


async def test_unknown_path_and_method_on_a_bound_route() -> None:
    phase = _phase()
    unknown = await _decide(phase, _ctx("GET", "/customers/1"))
    assert unknown is not None and unknown.http_status == 404 and unknown.outcome.value == "not_found"
    wrong = await _decide(phase, _ctx("PUT", "/invoices/1"))
    assert wrong is not None and wrong.http_status == 405
    assert wrong.response_headers["allow"] == "DELETE, GET"


async def test_unbound_requests_outside_any_contract_pass() -> None:
    assert await _decide(_phase(), _ctx("GET", "/health", bound=None)) is None


async def test_unbound_requests_matching_a_contract_are_checked() -> None:
    decision = await _decide(_phase(), _ctx("GET", "/invoices/abc", bound=None))
    assert decision is not None and decision.http_status == 400


async def test_oversized_body_is_refused_by_size_and_by_declared_length() -> None:
    phase = _phase(max_body_bytes=64)
    big = json.dumps({"customer": "x" * 100, "amount": 1}).encode()
    decision = await _decide(phase, _ctx("POST", "/invoices", body=big))
    assert decision is not None and decision.http_status == 413 and decision.reason == "body_too_large"
    # Envoy sent headers only, but says the body is large.
    headers_only = _ctx("POST", "/invoices", headers={"content-length": "5000", "content-type": "application/json"})
    decision = await _decide(phase, headers_only)
    assert decision is not None and decision.http_status == 413


async def test_body_not_forwarded_checks_what_link_has() -> None:
    phase = _phase()
    ctx = _ctx("POST", "/invoices", headers={"content-length": "40", "content-type": "application/json"})
    assert await _decide(phase, ctx) is None  # required body fields cannot be checked without the body
    assert ctx.record.contract_body == "unavailable"
    # A path parameter is still checked.
    bad = _ctx("DELETE", "/invoices/x", headers={"content-length": "2"})
    decision = await _decide(phase, bad)
    assert decision is not None and decision.http_status == 400


async def test_observe_mode_only_counts_and_marks() -> None:
    phase = _phase(mode="observe")
    ctx = _ctx("POST", "/invoices", body=b'{"customer": "acme"}')
    assert await _decide(phase, ctx) is None
    assert ctx.record.contract_violation == "amount: is required"
    assert ctx.record.contract_mode == "observe"


def test_route_bound_to_a_missing_contract_stops_start_up() -> None:
    settings = load_settings(env={}, overrides={
        "contracts.paths": [EXAMPLE],
        "routes": [{"name": "r", "prefix": "/x", "contract": "nope"}],
    })
    with pytest.raises(ConfigError, match=r"routes\[0\].contract"):
        build_contract_phase(settings)


def test_a_non_compliant_contract_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "name: payments\nversion: 1.0.0\ntenant_id: t\nclassification: VVH\n"
        "required_policies: [rate-limit, auth-jwt]\nendpoints: []\n")
    settings = load_settings(env={}, overrides={"contracts.paths": [str(tmp_path)]})
    with pytest.raises(ConfigError, match="classification VVH requires mtls, audit-logging, data-encryption"):
        build_contract_phase(settings)
