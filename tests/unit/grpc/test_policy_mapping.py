"""A policy's result onto Envoy's CheckResponse, field for field as OPA-Envoy sends it."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from link.decision_metadata import record_from_wire, wire_metadata
from link.grpc.authz import check_response
from link.model import Decision, DecisionRecord, Outcome, PolicyEffects

_DEFAULT = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def _pairs(options: object) -> list[tuple[str, str, int]]:
    return [(h.header.key, h.header.value, h.append_action) for h in options]  # type: ignore[attr-defined]


def test_allowed_policy_effects_use_envoys_default_action() -> None:
    d = Decision(allowed=True, upstream_headers={"x-stoa-tenant": "acme"},
                 response_headers={"x-request-id": "r"}, remove_headers=["authorization"],
                 record=DecisionRecord(tenant="acme", decision_id="d1"))
    d.policy = PolicyEffects(upstream_headers=[("x-multi", "one"), ("x-multi", "two")],
                             response_headers=[("set-cookie", "a=1"), ("set-cookie", "b=2")],
                             query_to_set=[("lang", "en"), ("added", "1")], query_to_remove=["token"],
                             metadata={"tenant": "policy", "nested": {"k": ["v"]}})
    ok = check_response(d).ok_response
    # Link's own headers replace; the policy's go as OPA-Envoy sends them (no action: Envoy's default).
    assert _pairs(ok.headers) == [("x-stoa-tenant", "acme", _OVERWRITE), ("x-multi", "one", _DEFAULT),
                                  ("x-multi", "two", _DEFAULT)]
    assert not ok.headers[1].HasField("append")
    assert _pairs(ok.response_headers_to_add) == [("x-request-id", "r", _OVERWRITE), ("set-cookie", "a=1", _DEFAULT),
                                                  ("set-cookie", "b=2", _DEFAULT)]
    assert [(q.key, q.value) for q in ok.query_parameters_to_set] == [("lang", "en"), ("added", "1")]
    assert list(ok.query_parameters_to_remove) == ["token"]
    assert list(ok.headers_to_remove) == ["authorization"]


def test_metadata_keeps_the_policys_object_and_prefixes_links() -> None:
    d = Decision(allowed=True, record=DecisionRecord(tenant="acme", outcome="success", decision_id="d1"))
    d.policy = PolicyEffects(metadata={"tenant": "policy", "decision_id": "theirs", "nested": {"k": [1, "x"]},
                                       "stoa.tenant": "spoof", "flag": True})
    meta = json_format.MessageToDict(check_response(d).dynamic_metadata)
    assert meta == {"tenant": "policy", "nested": {"k": [1, "x"]}, "flag": True,
                    "stoa.tenant": "acme", "stoa.outcome": "success", "decision_id": "d1"}
    assert record_from_wire(meta) == DecisionRecord(tenant="acme", outcome="success", decision_id="d1")


def test_wire_metadata_without_policy() -> None:
    d = Decision(allowed=False, record=DecisionRecord(reason="invalid_token", decision_id="d"))
    assert wire_metadata(d) == {"stoa.reason": "invalid_token", "decision_id": "d"}


def test_policy_refusal_is_sent_as_defined() -> None:
    d = Decision.deny(302, Outcome.POLICY_DENIED, "policy_denied", "request denied by policy",
                      {"x-request-id": "r"})
    d.body = b""
    d.policy_response = True
    d.policy = PolicyEffects(response_headers=[("location", "/login"), ("set-cookie", "a=1"), ("set-cookie", "b=2")])
    denied = check_response(d).denied_response
    assert denied.status.code == 302 and denied.body == ""
    # No content type of Link's: Envoy adds text/plain only when the policy gives a body.
    assert [h[:2] for h in _pairs(denied.headers)] == [("x-request-id", "r"), ("location", "/login"),
                                                       ("set-cookie", "a=1"), ("set-cookie", "b=2")]


def test_link_refusal_keeps_its_json_error() -> None:
    d = Decision.deny(401, Outcome.UNAUTHENTICATED, "invalid_token", "bad token")
    d.body = b'{"error":"unauthorized"}'
    d.policy = PolicyEffects(response_headers=[("x-from-policy", "1")])  # an earlier allow's headers: not sent
    denied = check_response(d).denied_response
    assert {h.header.key: h.header.value for h in denied.headers} == {"content-type": "application/json"}
