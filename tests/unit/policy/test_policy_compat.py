"""The policy phase on OPA-Envoy's terms: input it cannot build, refusals it defines, errors, the input shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from link.model import PeerIdentity
from link.pipeline.response import ResponsePhase
from link.policy.inputdoc import build_input
from link.settings import load_settings
from tests.unit.policy.support import make_ctx, make_phase

ALLOW_ALL = "package envoy.authz\n\nimport rego.v1\n\ndefault allow := true\n"
DENY_ALL = "package envoy.authz\n\nimport rego.v1\n\ndefault allow := false\n"


@pytest.mark.parametrize(("body", "query", "path"), [
    (b'{"a": ', "", "/"),
    (b"[" * 300 + b"]" * 300, "", "/"),
    (None, "a=%zz", "/"),
    (None, "a=1;b=2", "/"),
    (None, "", "/a%zz"),
])
async def test_unparsable_input_is_refused_before_the_policy(tmp_path: Path, body: bytes | None, query: str,
                                                            path: str) -> None:
    # Even a policy that allows everything, and reads no part of the input, never runs.
    phase = make_phase(tmp_path, ALLOW_ALL)
    decision = await phase(make_ctx("POST", path, query=query, body=body))
    assert decision is not None
    assert (decision.http_status, decision.reason, decision.outcome.value) == (400, "request_parse_error", "invalid")
    assert not decision.policy_response  # Link's refusal: its JSON error explains


async def test_unparsable_input_in_dry_run_is_counted_not_refused(tmp_path: Path) -> None:
    phase = make_phase(tmp_path, ALLOW_ALL, dry_run=True)
    ctx = make_ctx("POST", body=b"{bad")
    assert await phase(ctx) is None
    assert ctx.record.policy_dry_run == "request_parse_error"


async def test_boolean_refusal_has_an_empty_body_after_the_response_phase(tmp_path: Path) -> None:
    ctx = make_ctx()
    decision = await make_phase(tmp_path, DENY_ALL)(ctx)
    assert decision is not None and decision.policy_response
    settings = load_settings(env={}, overrides={})
    final = ResponsePhase(settings.identity).finish_denial(ctx, decision)
    assert (final.http_status, final.body) == (403, b"")
    assert final.record.reason == "policy_denied"


@pytest.mark.parametrize(("rego", "status", "reason"), [
    ('package envoy.authz\n\nallow := {"allowed": false, "http_status": 418}\n', 503, "policy_error"),
    ('package envoy.authz\n\nallow := {"allowed": false, "http_status": 451}\n', 503, "policy_error"),
    ('package envoy.authz\n\nallow := "yes"\n', 503, "policy_error"),
    ("package envoy.authz\n\nimport rego.v1\n\nallow if input.nothing\n", 503, "policy_undefined"),
])
async def test_results_opa_envoy_refuses_are_policy_errors(tmp_path: Path, rego: str, status: int,
                                                           reason: str) -> None:
    decision = await make_phase(tmp_path, rego)(make_ctx())
    assert decision is not None and (decision.http_status, decision.reason) == (status, reason)
    assert await make_phase(tmp_path, rego, failure_mode="open")(make_ctx()) is None


async def test_dry_run_keeps_the_policys_metadata(tmp_path: Path) -> None:
    rego = 'package envoy.authz\n\nallow := {"allowed": false, "dynamic_metadata": {"rule": "r1"}}\n'
    ctx = make_ctx()
    assert await make_phase(tmp_path, rego, dry_run=True)(ctx) is None
    assert ctx.policy is not None and ctx.policy.metadata == {"rule": "r1"}


def test_input_document_shape() -> None:
    ctx = make_ctx("POST", "/people/Charlie%20Opa", query="lang=en&lang=fr", body=b'{"firstname": "Charlie"}')
    req = ctx.request
    req.stream_id = "1234567890"
    req.received_at = 1757944467.898459
    req.peer = PeerIdentity(principal="spiffe://cluster.local/ns/a/sa/b")
    doc: dict[str, Any] = build_input(ctx)
    http = doc["attributes"]["request"]["http"]
    assert http["id"] == "1234567890"  # Envoy's request id, as in its CheckRequest
    assert http["size"] == len(b'{"firstname": "Charlie"}') and isinstance(http["size"], int)
    assert http["path"] == "/people/Charlie%20Opa?lang=en&lang=fr"
    assert http["body"] == '{"firstname": "Charlie"}'
    assert doc["attributes"]["request"]["time"] == {"seconds": 1757944467, "nanos": 898459000}
    assert doc["attributes"]["metadataContext"] == {} and doc["attributes"]["routeMetadataContext"] == {}
    assert doc["attributes"]["source"]["principal"] == "spiffe://cluster.local/ns/a/sa/b"
    assert doc["source_principal"] == "spiffe://cluster.local/ns/a/sa/b"
    assert doc["parsed_path"] == ["people", "Charlie Opa"]
    assert doc["parsed_query"] == {"lang": ["en", "fr"]}
    assert (doc["parsed_body"], doc["truncated_body"]) == ({"firstname": "Charlie"}, False)
    assert doc["version"] == {"ext_authz": "v3", "encoding": "protojson"}


def test_size_is_the_declared_length_of_a_cut_body() -> None:
    ctx = make_ctx("POST", body=b"x" * 10, headers={"content-length": "4000", "content-type": "text/plain"})
    doc = build_input(ctx)
    assert doc["attributes"]["request"]["http"]["size"] == 4000 and doc["truncated_body"] is False


async def test_unparsable_input_is_in_the_decision_log(tmp_path: Path) -> None:
    import json

    log = tmp_path / "decisions.jsonl"
    phase = make_phase(tmp_path, ALLOW_ALL, decision_log=str(log))
    await phase.start()
    ctx = make_ctx("POST", body=b'{"password": "hunter2"')
    assert await phase(ctx) is not None
    await phase.stop()
    entry = json.loads(log.read_text().splitlines()[0])
    assert entry["decision_id"] == ctx.decision_id and entry["allowed"] is False
    assert "not valid JSON" in entry["error"] and entry["input"] is None
    assert "hunter2" not in log.read_text()


def test_context_extensions_are_envoys_only() -> None:
    ctx = make_ctx()
    ctx.request.context.update({"route": "orders", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"})
    assert build_input(ctx)["attributes"]["contextExtensions"] == {"route": "orders"}
    ctx.request.context = {"tracestate": "x=1"}
    assert "contextExtensions" not in build_input(ctx)["attributes"]


async def test_integers_beyond_64_bits_reach_the_policy_as_numbers(tmp_path: Path) -> None:
    rego = "package envoy.authz\n\nimport rego.v1\n\nallow if input.parsed_body.n > 1e20\n"
    ctx = make_ctx("POST", body=b'{"n": 123456789012345678901234567890}')
    assert await make_phase(tmp_path, rego)(ctx) is None
