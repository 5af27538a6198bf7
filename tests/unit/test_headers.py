"""The one header fold every adapter uses: case, repeats, order, empties."""

from __future__ import annotations

import pytest

from link.headers import fold_headers


@pytest.mark.parametrize(("fields", "expected"), [
    ([], {}),
    ([("Content-Type", "application/json")], {"content-type": "application/json"}),
    ([("Accept", "a"), ("accept", "b"), ("ACCEPT", "c")], {"accept": "a,b,c"}),
    ([("x-a", "1"), ("x-b", "2"), ("x-a", "3")], {"x-a": "1,3", "x-b": "2"}),
    ([("x-empty", ""), ("x-empty", "v")], {"x-empty": ",v"}),
    ([("set-cookie", "a=1, b=2"), ("set-cookie", "c=3")], {"set-cookie": "a=1, b=2,c=3"}),
    ([(":path", "/x"), (":method", "GET")], {":path": "/x", ":method": "GET"}),
])
def test_fields_fold_into_one_lower_cased_map(fields: list[tuple[str, str]], expected: dict[str, str]) -> None:
    assert fold_headers(fields) == expected


def test_a_generator_is_consumed_once() -> None:
    assert fold_headers((n, v) for n, v in [("A", "1"), ("a", "2")]) == {"a": "1,2"}
