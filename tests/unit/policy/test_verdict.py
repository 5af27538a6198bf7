"""Reading a policy result the way OPA-Envoy's envoyauth package does, field by field."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.type.v3 import http_status_pb2

from link.policy.verdict import ENVOY_STATUS_CODES, DecisionFormatError, UndefinedDecision, Verdict, read_verdict


def test_status_set_is_envoys_enum() -> None:
    assert set(http_status_pb2.StatusCode.values()) - {0} == ENVOY_STATUS_CODES


@pytest.mark.parametrize(("value", "allowed", "structured"), [
    (True, True, False),
    (False, False, False),
    ({"allowed": True}, True, True),
    ({"allowed": False}, False, True),
])
def test_boolean_and_object(value: Any, allowed: bool, structured: bool) -> None:
    verdict = read_verdict(value)
    assert (verdict.allowed, verdict.structured) == (allowed, structured)
    assert (verdict.http_status, verdict.body) == (403, "")  # OPA-Envoy's defaults for a refusal


def test_undefined_is_an_error() -> None:
    with pytest.raises(UndefinedDecision):
        read_verdict(None, undefined=True)


def test_every_field_of_an_allowed_result() -> None:
    verdict = read_verdict({
        "allowed": True,
        "headers": {"X-A": "1", "x-list": ["a", "b"]},
        "response_headers_to_add": [{"set-cookie": "a=1"}, {"set-cookie": ["b=2", "c=3"]}],
        "request_headers_to_remove": ["Authorization", "x-internal"],
        "query_parameters_to_set": {"added": "1", "multi": ["x", "y"]},
        "query_parameters_to_remove": ["token"],
        "dynamic_metadata": {"tenant": "t", "nested": {"k": [1]}},
    })
    assert verdict == Verdict(
        allowed=True, structured=True,
        headers=[("x-a", "1"), ("x-list", "a"), ("x-list", "b")],
        response_headers_to_add=[("set-cookie", "a=1"), ("set-cookie", "b=2"), ("set-cookie", "c=3")],
        request_headers_to_remove=["authorization", "x-internal"],
        query_parameters_to_set=[("added", "1"), ("multi", "x"), ("multi", "y")],
        query_parameters_to_remove=["token"],
        dynamic_metadata={"tenant": "t", "nested": {"k": [1]}},
    )


def test_every_field_of_a_refusal() -> None:
    verdict = read_verdict({"allowed": False, "http_status": 302, "headers": {"location": "/login"},
                            "body": "", "dynamic_metadata": {"why": "login"}})
    assert (verdict.http_status, verdict.headers, verdict.body, verdict.dynamic_metadata) == (
        302, [("location", "/login")], "", {"why": "login"})


@pytest.mark.parametrize("status", sorted(ENVOY_STATUS_CODES))
def test_every_envoy_status_is_accepted(status: int) -> None:
    assert read_verdict({"allowed": False, "http_status": status}).http_status == status


@pytest.mark.parametrize("value", [
    # Branch-only fields are not read on the other branch (OPA-Envoy never calls their getters).
    {"allowed": True, "http_status": 418, "body": {"x": 1}},
    {"allowed": False, "response_headers_to_add": 7, "request_headers_to_remove": "x",
     "query_parameters_to_set": [], "query_parameters_to_remove": 1},
    {"allowed": True, "http_status": 200.0},
    {"allowed": False, "http_status": 401.0},  # an integral number is an integer
])
def test_fields_of_the_other_branch_are_ignored(value: dict[str, Any]) -> None:
    read_verdict(value)


@pytest.mark.parametrize(("value", "reason"), [
    ("yes", "boolean or an object"),
    (1, "boolean or an object"),
    ([True], "boolean or an object"),
    ({}, "missing"),
    ({"allowed": "true"}, "must be a boolean"),
    ({"allowed": 1}, "must be a boolean"),
    ({"allowed": False, "http_status": 418}, "not one of Envoy's status codes"),
    ({"allowed": False, "http_status": 299}, "not one of Envoy's status codes"),
    ({"allowed": False, "http_status": 0}, "not one of Envoy's status codes"),
    ({"allowed": False, "http_status": 1000}, "not one of Envoy's status codes"),
    ({"allowed": False, "http_status": 302.5}, "integer"),
    ({"allowed": False, "http_status": "302"}, "integer"),
    ({"allowed": False, "http_status": True}, "integer"),
    ({"allowed": False, "body": {"a": 1}}, "body"),
    ({"allowed": False, "body": 12}, "body"),
    ({"allowed": True, "headers": "x"}, "headers"),
    ({"allowed": False, "headers": {"x": 1}}, "headers.x"),
    ({"allowed": True, "headers": {"x": ["a", 1]}}, "headers.x"),
    ({"allowed": True, "headers": [{"x": "a"}, "y"]}, "headers"),
    ({"allowed": True, "headers": {"bad name": "a"}}, "valid header name"),
    ({"allowed": True, "headers": {"x": "a\r\nInjected: 1"}}, "single-line"),
    ({"allowed": True, "response_headers_to_add": {"x": None}}, "response_headers_to_add.x"),
    ({"allowed": True, "request_headers_to_remove": "authorization"}, "request_headers_to_remove"),
    ({"allowed": True, "request_headers_to_remove": [1]}, "request_headers_to_remove"),
    ({"allowed": True, "query_parameters_to_set": ["a"]}, "query_parameters_to_set"),
    ({"allowed": True, "query_parameters_to_set": {"a": 1}}, "query_parameters_to_set.a"),
    ({"allowed": True, "query_parameters_to_remove": "a"}, "query_parameters_to_remove"),
    ({"allowed": True, "dynamic_metadata": ["a"]}, "dynamic_metadata"),
    ({"allowed": False, "dynamic_metadata": "a"}, "dynamic_metadata"),
])
def test_results_opa_envoy_refuses(value: Any, reason: str) -> None:
    with pytest.raises(DecisionFormatError, match=reason):
        read_verdict(value)
