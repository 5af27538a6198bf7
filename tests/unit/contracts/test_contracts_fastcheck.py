"""The compiled contract check never says "valid" where jsonschema would not (and agrees on the common cases)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from link.contracts.fastcheck import compile_check

ORDER: dict[str, Any] = {
    "type": "object", "required": ["customer", "currency", "lines"], "additionalProperties": False,
    "properties": {
        "customer": {"type": "string", "minLength": 1, "maxLength": 40, "description": "who"},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
        "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e6},
        "count": {"type": "integer", "minimum": 1, "exclusiveMaximum": 100},
        "note": {"type": ["string", "null"], "pattern": "^[a-z ]*$"},
        "tags": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "string"}},
        "meta": {"type": "object", "maxProperties": 2, "additionalProperties": {"type": "integer"}},
        "lines": {"type": "array", "items": {
            "type": "object", "required": ["sku", "qty"], "minProperties": 2,
            "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                           "qty": {"type": "integer", "minimum": 1}}}},
    },
}

_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 200), st.floats(allow_nan=True, allow_infinity=True),
                  st.sampled_from([0, 1, 1.0, 99.5, 100, 1e6, 1e6 + 1, 10**400, -0.0, True, False]),
                  st.sampled_from(["", "EUR", "USD", "eur", "ABC-1234", "ABC-12345", "x" * 41, "hello world",
                                   "Hello", "a\n"]), st.text(max_size=6))
_value = st.recursive(_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["sku", "qty", "a", "b", "c"]), inner, max_size=3)), max_leaves=12)
_line = st.fixed_dictionaries({"sku": st.sampled_from(["ABC-1234", "abc-1234", "ABC-12"]),
                               "qty": st.sampled_from([1, 0, 2.0, True, "1"])},
                              optional={"x": _value})
_order = st.fixed_dictionaries(
    {},
    optional={"customer": _value | st.just("ACME"), "currency": _value | st.just("EUR"), "amount": _value,
              "count": _value, "note": _value, "tags": _value | st.just(["a"]), "meta": _value | st.just({"a": 1}),
              "lines": st.lists(_line, max_size=3) | _value, "extra": _value})


def _both(schema: dict[str, Any]) -> tuple[Any, Draft202012Validator]:
    check = compile_check(schema, "Draft202012Validator")
    assert check is not None
    return check, Draft202012Validator(schema, format_checker=FormatChecker())


@settings(max_examples=1500, deadline=None)
@given(_order)
def test_fast_valid_only_where_jsonschema_is_valid(doc: dict[str, Any]) -> None:
    check, reference = _both(ORDER)
    assert check(doc) == reference.is_valid(doc)


def test_agreement_table() -> None:
    check, reference = _both(ORDER)
    good = {"customer": "ACME", "currency": "EUR", "lines": [{"sku": "ABC-1234", "qty": 2}]}
    cases: list[tuple[dict[str, Any], bool]] = [
        (good, True),
        ({**good, "count": 1.0}, True),  # 1.0 is an integer (draft 6+)
        ({**good, "count": True}, False),  # a bool is not
        ({**good, "amount": 0}, False),  # exclusive
        ({**good, "amount": 10**400}, False),  # exact comparison, no float overflow
        ({**good, "currency": "eur"}, False),
        ({**good, "extra": 1}, False),
        ({**good, "meta": {"a": 1, "b": "x"}}, False),
        ({**good, "note": None}, True),
        ({**good, "note": "Upper"}, False),
        ({**good, "tags": []}, False),
        ({k: v for k, v in good.items() if k != "lines"}, False),
        ({**good, "lines": [{"sku": "ABC-1234"}]}, False),
    ]
    for doc, valid in cases:
        assert reference.is_valid(doc) is valid, doc
        assert check(doc) is valid, doc


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}},
    {"$ref": "#/$defs/x", "$defs": {"x": {"type": "string"}}},
    {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
    {"enum": [1, True]},  # 1 == True in Python, not in JSON Schema
    {"type": "array", "items": [{"type": "string"}]},
    {"type": "array", "uniqueItems": True},
    {"const": 1},
    {"type": "string", "pattern": "(?<=x"},  # not a Python regex
    {"type": "decimal"},
])
def test_anything_outside_the_subset_is_left_to_jsonschema(schema: dict[str, Any]) -> None:
    assert compile_check(schema, "Draft202012Validator") is None


def test_older_dialects_are_left_to_jsonschema() -> None:
    assert compile_check({"type": "integer"}, "Draft4Validator") is None
    assert compile_check({"type": "integer"}, "Draft7Validator") is not None
