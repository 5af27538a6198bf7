"""The quick argument check never calls valid what jsonschema (2020-12, formats asserted) refuses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from mcp_server.argcheck import quick_check

SIMPLE: list[dict[str, Any]] = [
    {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}}, "required": ["q"]},
    {"type": "object", "properties": {"x": {"type": "number", "description": "d"}, "b": {"type": "boolean"}},
     "additionalProperties": False},
    {"type": "object", "properties": {"v": {"type": ["string", "null"]}, "o": {"type": "object"},
                                      "a": {"type": "array"}, "any": {}}, "required": ["v", "any"]},
    {"properties": {"id": {"type": "string", "x-mcp-header": "Id", "title": "t"}}},
    {"type": "object"},
    {},
]

NOT_SIMPLE: list[dict[str, Any]] = [
    {"$schema": "http://json-schema.org/draft-04/schema#", "properties": {"n": {"type": "integer"}}},
    {"properties": {"d": {"type": "string", "format": "date"}}},
    {"properties": {"e": {"enum": [1, 2]}}},
    {"properties": {"s": {"type": "string", "minLength": 2}}},
    {"properties": {"o": {"type": "object", "properties": {"x": {"type": "string"}}}}},
    {"properties": {"r": {"$ref": "#/$defs/r"}}, "$defs": {"r": {"type": "string"}}},
    {"additionalProperties": {"type": "string"}},
    {"type": "array"},
    {"properties": {"t": {"type": "strnig"}}},
    {"properties": {"t": False}},
    {"patternProperties": {"^x": {"type": "string"}}},
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1.0, -2.0, 0.5]) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner, max_size=2),
    max_leaves=4,
)
arguments = st.dictionaries(st.sampled_from(["q", "n", "x", "b", "v", "o", "a", "any", "id", "zz"]), json_values,
                            max_size=5)


@pytest.mark.parametrize("schema", SIMPLE, ids=range(len(SIMPLE)))
@settings(max_examples=150, deadline=None)
@given(args=arguments)
def test_quick_valid_agrees_with_jsonschema(schema: dict[str, Any], args: dict[str, Any]) -> None:
    check = quick_check(schema)
    assert check is not None
    judge = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert check(args) == judge.is_valid(args)


@pytest.mark.parametrize("schema", NOT_SIMPLE, ids=range(len(NOT_SIMPLE)))
def test_other_schemas_are_left_to_jsonschema(schema: dict[str, Any]) -> None:
    assert quick_check(schema) is None


def test_integral_floats_are_integers_and_booleans_are_not() -> None:
    check = quick_check({"properties": {"n": {"type": "integer"}, "x": {"type": "number"}}})
    assert check is not None
    assert check({"n": 1.0}) and check({"n": 3})
    assert not check({"n": 1.5}) and not check({"n": True}) and not check({"x": False})
