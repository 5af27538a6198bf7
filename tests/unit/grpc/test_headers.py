"""Envoy's HeaderMap read the same way by every ext_proc adapter."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2

from link.grpc.headers import header_map


def _map(*fields: tuple[str, str, bytes]) -> base_pb2.HeaderMap:
    return base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=k, value=v, raw_value=r) for k, v, r in fields])


@pytest.mark.parametrize(("fields", "expected"), [
    ((), {}),
    ((("Content-Type", "", b"application/json"),), {"content-type": "application/json"}),
    ((("x-legacy", "old", b""),), {"x-legacy": "old"}),  # value only: Envoy without raw values
    ((("x-both", "old", b"new"),), {"x-both": "new"}),  # raw_value wins
    ((("accept", "", b"a"), ("Accept", "", b"b")), {"accept": "a,b"}),
    ((("x-bad", "", b"\xff\xfe"),), {"x-bad": "\ufffd\ufffd"}),  # undecodable bytes never raise
])
def test_header_map(fields: tuple[tuple[str, str, bytes], ...], expected: dict[str, str]) -> None:
    assert header_map(_map(*fields)) == expected
