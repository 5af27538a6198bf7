"""traceparent parsing and the trace context taken from gRPC metadata."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from link.model import Request
from link.telemetry.propagation import (
    format_traceparent,
    parent_carrier,
    parse_traceparent,
    trace_context_from_metadata,
    trace_id_of,
)

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_parse_and_format_round_trip() -> None:
    tp = parse_traceparent(VALID)
    assert tp is not None
    assert (tp.trace_id, tp.span_id, tp.sampled) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", True)
    assert format_traceparent(int(tp.trace_id, 16), int(tp.span_id, 16), 1) == VALID
    assert parse_traceparent(VALID.upper()) == tp
    assert parse_traceparent(VALID[:-2] + "00") is not None
    assert parse_traceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future") is not None


@pytest.mark.parametrize("value", [
    "", "garbage", VALID[:-1], "ff" + VALID[2:],
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
    "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
])
def test_invalid_traceparents(value: str) -> None:
    assert parse_traceparent(value) is None


_SPELLINGS = [
    VALID, VALID.upper(), f"  {VALID}\t", VALID[:-2] + "00", VALID + "-future", "01" + VALID[2:], "ff" + VALID[2:],
    "", "garbage", VALID[:-1], VALID + "x", "00-00000000000000000000000000000000-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
    "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01", VALID.replace("-", "_"), VALID + "\n",
    "0-" + VALID[3:], VALID[:3] + "0" + VALID[3:], "\u0660" + VALID[1:],
]


@pytest.mark.parametrize("value", _SPELLINGS)
def test_trace_id_of_reads_exactly_what_parse_traceparent_accepts(value: str) -> None:
    tp = parse_traceparent(value)
    assert trace_id_of(value) == (tp.trace_id if tp is not None else "")


@given(st.text(alphabet="0123456789abcdefABCDEF-fx \t", max_size=64))
def test_trace_id_of_agrees_with_parse_traceparent_on_any_spelling(value: str) -> None:
    tp = parse_traceparent(value)
    assert trace_id_of(value) == (tp.trace_id if tp is not None else "")


def test_trace_context_from_grpc_metadata() -> None:
    md = [("x-forwarded-for", "1.2.3.4"), ("traceparent", VALID), ("tracestate", b"a=b"), ("Other", "x")]
    assert trace_context_from_metadata(md) == {"traceparent": VALID, "tracestate": "a=b"}
    assert trace_context_from_metadata([("traceparent", "bogus")]) == {}
    assert trace_context_from_metadata(None) == {}
    # Envoy sends an empty tracestate when it has none.
    assert trace_context_from_metadata([("traceparent", VALID), ("tracestate", "")]) == {"traceparent": VALID}


def test_parent_carrier_prefers_envoy() -> None:
    req = Request(method="GET", path="/", headers={"traceparent": VALID, "tracestate": "c=1"})
    assert parent_carrier(req) == ({"traceparent": VALID, "tracestate": "c=1"}, False)
    envoy = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    req.context.update({"traceparent": envoy})
    assert parent_carrier(req) == ({"traceparent": envoy}, True)
    assert parent_carrier(Request(method="GET", path="/", headers={"traceparent": "nope"})) == ({}, False)
