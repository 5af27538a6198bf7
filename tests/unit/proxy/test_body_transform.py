"""JSON body transforms: dotted paths, order (rename, remove, add), and inputs that are left alone."""

from __future__ import annotations

import json

import pytest

from link.proxy.transform import apply_transform, transform_body
from link.settings import BodyTransformSettings

JSON = {"content-type": "application/json; charset=utf-8"}


@pytest.mark.parametrize(("doc", "rules", "expected"), [
    ({"a": 1}, {"add": {"b": 2}}, {"a": 1, "b": 2}),
    ({"a": 1}, {"add": {"a": 5}}, {"a": 5}),
    ({"a": {"b": 1}}, {"add": {"a.c": [1]}}, {"a": {"b": 1, "c": [1]}}),
    ({}, {"add": {"x.y.z": True}}, {"x": {"y": {"z": True}}}),
    ({"a": 1, "b": 2}, {"remove": ["b", "missing", "a.deeper"]}, {"a": 1}),
    ({"a": {"b": 1, "c": 2}}, {"remove": ["a.b"]}, {"a": {"c": 2}}),
    ({"old": 1}, {"rename": {"old": "new"}}, {"new": 1}),
    ({"old": 1}, {"rename": {"old": "deep.new"}}, {"deep": {"new": 1}}),
    ({"old": 1}, {"rename": {"old": "new"}, "add": {"old": 0}}, {"new": 1, "old": 0}),
    ({"a": "scalar"}, {"add": {"a.b": 1}}, {"a": "scalar"}),  # no structure invented under a value
    ([1, 2], {"add": {"a": 1}}, [1, 2]),  # a top-level array is not an object
    ({"a": [{"b": 1}]}, {"remove": ["a.b"]}, {"a": [{"b": 1}]}),  # paths do not walk into arrays
])
def test_apply_transform(doc: object, rules: dict[str, object], expected: object) -> None:
    before = json.dumps(doc)
    assert apply_transform(doc, BodyTransformSettings.model_validate(rules)) == expected
    assert json.dumps(doc) == before  # the input is not changed


@pytest.mark.parametrize(("body", "headers"), [
    (b"", JSON),
    (b'{"a": 1}', {"content-type": "text/plain"}),
    (b"not json", JSON),
    (b"[" * 10_000, JSON),  # hostile nesting: left alone, never a crash
    (b'{"a": 1, "a": 2}', {}),
])
def test_bodies_left_alone(body: bytes, headers: dict[str, str]) -> None:
    assert transform_body(body, headers, BodyTransformSettings(add={"x": 1})) is None


def test_unchanged_body_is_not_rewritten() -> None:
    assert transform_body(b'{"a": 1}', JSON, BodyTransformSettings(remove=["zzz"])) is None
    assert transform_body(b'{"a": 1}', {"content-type": "application/problem+json"},
                          BodyTransformSettings(add={"b": 2})) == b'{"a":1,"b":2}'
