"""The bounded JSON loader: a corpus of hostile documents, and agreement with json.loads elsewhere."""

from __future__ import annotations

import json
import random

import pytest

from link.jsonsafe import JsonRefused, loads, nesting_depth_exceeds, value_depth_exceeds


def _nest(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * depth + closer * depth


REFUSED: dict[str, tuple[bytes, str]] = {
    "100k-open-brackets": (b"[" * 100_000, "too_deep"),
    "deep-closed-array": (_nest(5_000), "too_deep"),
    "deep-object": (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "too_deep"),
    "deep-mixed": (b'[{"k":' * 2_000 + b"0" + b"}]" * 2_000, "too_deep"),
    "one-over-the-depth": (_nest(65), "too_deep"),
    "escaped-quote-hides-nothing": (b'["\\"' + b"]" * 100 + b'"' + b"[" * 100 + b"]" * 101, "too_deep"),
    "escaped-backslash-then-quote": (b'["\\\\"' + b"[" * 100 + b"]" * 101, "too_deep"),
    "deep-between-empty-strings": (b'["",' * 65 + b'""' + b"]" * 65, "too_deep"),
    "deep-between-adjacent-strings": (b'{"":"","a":' * 65 + b'"]"' + b"}" * 65, "too_deep"),
    "mismatched-kinds": (b"[}" * 100, "invalid_json"),
    "mismatched-kinds-deep": (b"[" * 1_000 + b"}" * 1_000, "too_deep"),
    "closers-first": (b"]" * 1_000 + b"[" * 1_000, "too_deep"),
    "too-large": (b'"' + b"x" * 2_000 + b'"', "too_large"),
    "1e999999": (b"1e999999", "non_finite_number"),
    "-1e999999": (b"[-1e999999]", "non_finite_number"),
    "1e309": (b'{"a":1e309}', "non_finite_number"),
    "10000-digit-int": (b"9" * 10_000, "number_too_long"),
    "NaN": (b"[NaN]", "non_finite_number"),
    "Infinity": (b'{"x":Infinity}', "non_finite_number"),
    "-Infinity": (b"-Infinity", "non_finite_number"),
    "invalid-utf8": (b'"\xff"', "invalid_utf8"),
    "truncated-utf8": (b'"\xe2\x82"', "invalid_utf8"),
    "overlong-utf8": (b'"\xc0\x80"', "invalid_utf8"),
    "cesu-surrogate": (b'"\xed\xb0\x80"', "invalid_utf8"),
    "utf16-bytes": ('{"a":1}'.encode("utf-16"), "invalid_utf8"),
    "bom": (b"\xef\xbb\xbf{}", "bom"),
    "lone-high": (b'"\\ud800"', "lone_surrogate"),
    "lone-low": (b'["\\udc00"]', "lone_surrogate"),
    "high-high": (b'"\\ud800\\ud800"', "lone_surrogate"),
    "surrogate-in-key": (b'{"\\udbff":1}', "lone_surrogate"),
    "duplicate-keys": (b'{"a":1,"a":2}', "duplicate_key"),
    "nested-duplicate-keys": (b'{"a":{"b":1,"b":1}}', "duplicate_key"),
    "trailing-comma": (b"[1,]", "invalid_json"),
    "single-quotes": (b"{'a':1}", "invalid_json"),
    "empty": (b"", "invalid_json"),
    "two-documents": (b"{} {}", "invalid_json"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_hostile_documents_are_refused_with_a_reason(case: str) -> None:
    raw, reason = REFUSED[case]
    with pytest.raises(JsonRefused) as caught:
        loads(raw, max_bytes=1_000 if case == "too-large" else 1 << 20, reject_duplicate_keys=True)
    assert caught.value.reason == reason
    assert str(caught.value)


ACCEPTED: dict[str, bytes] = {
    "at-the-depth": _nest(64),
    "objects-at-the-depth": b'{"a":' * 63 + b"{}" + b"}" * 63,
    "many-siblings": b"[" + b",".join([b"[]"] * 10_000) + b"]",
    "brackets-in-strings": b'["' + b"[" * 10_000 + b'", "' + b"}" * 500 + b'"]',
    "escaped-quotes": b'["a\\"[[[[", "\\\\", "\\\\\\"]]"]',
    "brackets-in-strings-beside-empty-ones": b'["[", "", "]", "", "[[", "]]"]' + b"",
    "shallow-with-many-empty-strings": b"[" + b",".join([b'["", "", {"": ""}]'] * 5_000) + b"]",
    "surrogate-pair": b'"\\ud83d\\ude00"',
    "escaped-backslash-u": b'"\\\\ud800"',
    "4300-digit-int": b"7" * 4300,
    "big-finite-float": b"1.7976931348623157e308",
    "long-string": b'"' + b"x" * 500_000 + b'"',
    "unicode": '{"é":"日本語","emoji":"😀"}'.encode(),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_ordinary_documents_parse_exactly_like_json_loads(case: str) -> None:
    raw = ACCEPTED[case]
    assert loads(raw, max_bytes=1 << 20, reject_duplicate_keys=True) == json.loads(raw)


def test_duplicate_keys_are_last_wins_unless_refused() -> None:
    assert loads(b'{"a":1,"a":2}') == {"a": 2}


def _random_value(rng: random.Random, budget: int) -> object:
    roll = rng.random()
    if budget <= 0 or roll < 0.3:
        return rng.choice(['[{"', '\\"]', "}", 1, None, "plain", '\\\\"[['])  # strings full of brackets
    children = [_random_value(rng, budget - 1) for _ in range(rng.randrange(0, 3))]
    if roll < 0.65:
        return children
    return {f"k{i}[": c for i, c in enumerate(children)}


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


def test_the_depth_scan_agrees_with_the_real_depth_on_random_documents() -> None:
    rng = random.Random(7)
    for _ in range(500):
        value = _random_value(rng, rng.randrange(1, 40))
        raw = json.dumps(value).encode()
        for limit in (1, 3, 8, 20):
            assert nesting_depth_exceeds(raw, limit) == (_depth(value) > limit), (raw, limit)
            assert value_depth_exceeds(value, limit) == (_depth(value) > limit), (raw, limit)


def test_the_value_walk_does_not_recurse() -> None:
    value: list[object] = []
    for _ in range(100_000):
        value = [value]
    assert value_depth_exceeds(value, 64) and not value_depth_exceeds([[1], {"a": [2]}], 3)
