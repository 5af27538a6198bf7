"""Link's fields and the policy's share Envoy's ext_authz namespace without colliding; the typed
record survives the trip through Envoy on either transport."""

from __future__ import annotations

from dataclasses import fields

from link.decision_metadata import LINK_PREFIX, link_key, record_from_wire, wire_metadata
from link.model import Decision, DecisionRecord, PolicyEffects


def test_keys() -> None:
    assert LINK_PREFIX == "stoa."
    assert link_key("tenant") == "stoa.tenant" and link_key("decision_id") == "decision_id"


FULL = DecisionRecord(
    decision_id="d", outcome="success", reason="ok", tenant="acme", consumer="app", subject="alice",
    credential="jwt", scopes=("a:read", "b:write"), roles=("admin",), route="orders", api="shop",
    route_template="/orders/{id}", tool="t", t_link_us=12, entry="mcp", mcp_action="tools/call",
    mcp_transport="streamable-http", error="policy: KeyError", ratelimit_applied=True,
    ratelimit_backend="unavailable", ratelimit_scope="tenant", contract="billing", contract_version="1.2.0",
    contract_mode="observe", contract_violation="amount: is required", contract_body="unavailable",
    operation_id="getInvoice", policy_dry_run="deny", policy_error="boom", policy_input_error="bad escape",
    policy_undefined=True, trace_id="0af7651916cd43dd8448eb211c80319c", decision="allow",
)


def test_every_field_of_the_record_is_set_in_the_round_trip_fixture() -> None:
    # A new field must join FULL, so the round trips below cover it.
    assert all(getattr(FULL, f.name) for f in fields(DecisionRecord))


def test_round_trip_as_the_grpc_transport_carries_it() -> None:
    d = Decision(allowed=True, record=FULL)
    d.policy = PolicyEffects(metadata={"tenant": "x", "reason": "policy reason", "decision_id": "y"})
    wire = wire_metadata(d)
    assert record_from_wire(wire) == FULL
    assert (wire["tenant"], wire["reason"], wire["decision_id"]) == ("x", "policy reason", "d")
    assert wire["stoa.scopes"] == "a:read b:write" and wire["stoa.t_link_us"] == 12


def test_round_trip_as_the_http_transport_carries_it() -> None:
    # HTTP ext_authz files every value as a flat string (numbers as gRPC's Struct gives them back: floats).
    flat = {k: ("true" if v is True else str(v)) for k, v in wire_metadata(Decision(allowed=True, record=FULL)).items()}
    assert record_from_wire(flat) == FULL
    assert record_from_wire({"stoa.t_link_us": 12.0, "stoa.ratelimit_applied": True}).t_link_us == 12


def test_unset_fields_are_not_sent_and_unreadable_values_are_not_trusted() -> None:
    assert wire_metadata(Decision(allowed=False, record=DecisionRecord(reason="invalid_token", decision_id="d"))) \
        == {"stoa.reason": "invalid_token", "decision_id": "d"}
    odd = record_from_wire({"stoa.t_link_us": "many", "stoa.ratelimit_applied": "yes", "stoa.unknown": "x"})
    assert odd == DecisionRecord()
    for count in ("INF", "-inf", "nan", "1e999", float("inf"), float("nan"), "9" * 400):
        assert record_from_wire({"stoa.t_link_us": count, "stoa.tenant": "acme"}) == DecisionRecord(tenant="acme")
    assert record_from_wire(None) == DecisionRecord() and record_from_wire({}) == DecisionRecord()


def test_reserved_prefix_is_links_alone() -> None:
    d = Decision(allowed=True)
    d.policy = PolicyEffects(metadata={"stoa.outcome": "forged", "stoa": "kept", "stoaX": 1})
    assert wire_metadata(d) == {"stoa": "kept", "stoaX": 1}
    assert record_from_wire(wire_metadata(d)) == DecisionRecord()


def test_merge_takes_what_the_later_decision_set() -> None:
    first = DecisionRecord(tenant="acme", outcome="success", contract="billing")
    first.merge(DecisionRecord(outcome="invalid", reason="contract_violation"))
    assert (first.tenant, first.outcome, first.reason, first.contract) == ("acme", "invalid", "contract_violation",
                                                                          "billing")
