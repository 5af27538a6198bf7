"""Contract body validation under hostile JSON: every document is a 4xx with a reason, never an exception,
and a recursive input_schema walks a document at the loader's depth limit without recursing unbounded."""

from __future__ import annotations

import pytest

from link.contracts.model import Contract, Endpoint
from link.contracts.validation import CompiledEndpoint
from link.jsonsafe import DEFAULT_MAX_DEPTH
from link.model import Request

RECURSIVE = {"type": "object", "properties": {"x": {"$ref": "#"}, "n": {"type": "integer"}}}


def _endpoint(schema: dict[str, object]) -> CompiledEndpoint:
    endpoint = Endpoint(path="/things", methods=("POST",), input_schema=schema)
    contract = Contract(name="things", version="1.0.0", tenant_id="t", classification="H", endpoints=(endpoint,))
    return CompiledEndpoint(contract, endpoint)


def _check(body: bytes, schema: dict[str, object] = RECURSIVE) -> tuple[int, str] | None:
    request = Request(method="POST", path="/things", body=body,
                      headers={"content-type": "application/json", "content-length": str(len(body))})
    violation, _ = _endpoint(schema).validate(request, {}, 1 << 20)
    return None if violation is None else (violation.status, violation.message)


def _nest(depth: int, leaf: bytes = b"{}") -> bytes:
    return b'{"x":' * depth + leaf + b"}" * depth


HOSTILE = {
    "100k-brackets": b"[" * 100_000,
    "deep-objects": _nest(10_000),
    "one-over-the-depth": _nest(DEFAULT_MAX_DEPTH),
    "huge-float": b'{"n":1e999999}',
    "huge-int": b'{"n":' + b"1" * 10_000 + b"}",
    "nan": b'{"n":NaN}',
    "invalid-utf8": b'{"x":"\xff"}',
    "bom": b"\xef\xbb\xbf{}",
    "lone-surrogate": b'{"s":"\\ud800"}',
    "duplicate-keys": b'{"n":1,"n":"one"}',
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_bodies_are_400_with_a_reason(case: str) -> None:
    result = _check(HOSTILE[case])
    assert result is not None and result[0] == 400 and result[1].startswith("body: ")


def test_a_recursive_schema_validates_a_document_at_the_depth_limit() -> None:
    assert _check(_nest(DEFAULT_MAX_DEPTH - 1)) is None
    bad = _check(_nest(DEFAULT_MAX_DEPTH - 2, b'{"n":"seven"}'))
    assert bad is not None and bad[0] == 422 and bad[1].endswith("expected integer, got string")
