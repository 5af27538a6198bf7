"""From RequestOutcome to the bytes of a MeteringEvent (JSON and protobuf)."""

from __future__ import annotations

import json
import math
import uuid

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from link.events import RequestOutcome
from link.metering.event import EventEncoder, EventOrigin, build_event, dumps, new_event_id, rfc3339
from link.model import Outcome
from stoa_proto import MeteringEvent
from tests.unit.metering.contract_fields import CONTRACT_FIELDS

ORIGIN = EventOrigin(gateway_id="gw-1", instance="pod-7", mode="sidecar")


def _outcome(**kw: object) -> RequestOutcome:
    base: dict[str, object] = dict(
        request_id="req-1", timestamp=1_700_000_000.25, method="POST", path="/invoices/42",
        http_status=429, outcome=Outcome.RATE_LIMITED, decision_id="d-1", reason="rate_limited",
        tenant="acme", consumer="billing-app", subject="alice", route="invoices",
        route_template="/invoices/{id}", api="invoices", scopes=["write", "read"], roles=["admin"],
        latency_ms=12.3456, t_gateway_ms=1.5, t_backend_ms=10.25, t_link_ms=0.4,
        request_size_bytes=120, response_size_bytes=64, trace_id="0af7651916cd43dd8448eb211c80319c",
    )
    base.update(kw)
    return RequestOutcome(**base)  # type: ignore[arg-type]


def test_every_contract_field_is_in_the_json_event_with_its_value() -> None:
    key, value = EventEncoder(ORIGIN).encode(_outcome())
    event = json.loads(value)
    assert set(event) >= CONTRACT_FIELDS
    assert key == b"acme"
    assert event["gateway_id"] == "gw-1" and event["instance"] == "pod-7" and event["mode"] == "sidecar"
    assert event["tenant_id"] == "acme" and event["user_id"] == "alice"
    assert event["consumer_id"] == "billing-app"
    assert event["api"] == "invoices" and event["tool_name"] == ""
    assert event["route"] == "/invoices/{id}"  # the template, never the raw path
    assert "/invoices/42" not in value.decode()
    assert event["method"] == "POST" and event["http_status"] == 429 and event["status"] == "rate_limited"
    assert event["latency_ms"] == 12.346 and event["t_gateway_ms"] == 1.5 and event["t_backend_ms"] == 10.25
    assert event["request_size_bytes"] == 120 and event["response_size_bytes"] == 64
    assert event["scopes"] == ["read", "write"] and event["roles"] == ["admin"]
    assert event["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert event["timestamp"] == "2023-11-14T22:13:20.250Z"
    assert event["request_id"] == "req-1" and event["reason"] == "rate_limited" and event["source"] == "envoy"


def test_the_json_form_is_the_protobuf_json_mapping() -> None:
    """A consumer can parse our JSON straight into the generated message."""
    _, value = EventEncoder(ORIGIN).encode(_outcome(tool="get-invoice", source="mcp"))
    message = json_format.Parse(value, MeteringEvent())
    assert message.tool_name == "get-invoice" and message.source == "mcp"
    assert message.timestamp.ToMilliseconds() == 1_700_000_000_250
    assert list(message.scopes) == ["read", "write"]


def test_protobuf_format_carries_the_same_event() -> None:
    outcome = _outcome()
    key, value = EventEncoder(ORIGIN, "protobuf").encode(outcome)
    message = MeteringEvent.FromString(value)
    assert key == b"acme"
    as_json = json_format.MessageToDict(message, preserving_proto_field_name=True)
    expected = build_event(outcome, ORIGIN, message.event_id)
    for name in ("tenant_id", "user_id", "route", "status", "trace_id", "scopes", "roles", "timestamp"):
        assert as_json[name] == expected[name], name
    assert message.http_status == 429 and message.request_size_bytes == 120


def test_event_ids_are_unique_and_anonymous_requests_have_no_key() -> None:
    encoder = EventEncoder(ORIGIN)
    records = [encoder.encode(_outcome(tenant="")) for _ in range(200)]
    assert {k for k, _ in records} == {None}
    assert len({json.loads(v)["event_id"] for _, v in records}) == 200


def test_broken_numbers_do_not_break_the_event() -> None:
    _, value = EventEncoder(ORIGIN).encode(
        _outcome(latency_ms=math.nan, t_backend_ms=math.inf, t_gateway_ms=-3.0, request_size_bytes=-1,
                 timestamp=math.nan)
    )
    event = json.loads(value)  # strict JSON: no NaN/Infinity tokens
    assert event["latency_ms"] == 0.0 and event["t_backend_ms"] == 0.0 and event["t_gateway_ms"] == 0.0
    assert event["request_size_bytes"] == 0
    json_format.Parse(value, MeteringEvent())  # the fallback timestamp is well formed


def test_rfc3339_has_milliseconds_and_a_z() -> None:
    assert rfc3339(0.999) == "1970-01-01T00:00:00.999Z"
    assert rfc3339(86_400.0) == "1970-01-02T00:00:00.000Z"


def test_the_gateway_id_can_change_after_registration() -> None:
    encoder = EventEncoder(ORIGIN)
    encoder.origin = EventOrigin(gateway_id="uuid-from-cp", instance="pod-7", mode="sidecar")
    assert json.loads(encoder.encode(_outcome())[1])["gateway_id"] == "uuid-from-cp"


_text = st.text(max_size=12)  # any unicode: quotes, backslashes, control characters, emoji
_ms = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=200, deadline=None)
@given(
    tenant=_text, subject=_text, consumer=_text, api=_text, tool=_text, template=_text, reason=_text,
    scopes=st.lists(_text, max_size=3), roles=st.lists(_text, max_size=3),
    latency=_ms, backend=_ms, size=st.integers(min_value=-5, max_value=2**40),
    status=st.integers(min_value=0, max_value=599), outcome=st.sampled_from(list(Outcome)),
    ts=st.floats(min_value=0, max_value=4e9),
)
def test_the_fast_json_writer_matches_the_reference_encoding(
    tenant: str, subject: str, consumer: str, api: str, tool: str, template: str, reason: str,
    scopes: list[str], roles: list[str], latency: float, backend: float, size: int, status: int,
    outcome: Outcome, ts: float,
) -> None:
    o = _outcome(
        tenant=tenant, subject=subject, consumer=consumer, api=api, tool=tool, route_template=template,
        reason=reason, scopes=scopes, roles=roles, latency_ms=latency, t_backend_ms=backend,
        request_size_bytes=size, http_status=status, outcome=outcome, timestamp=ts,
    )
    encoder = EventEncoder(EventOrigin(gateway_id=tenant, instance='pod "7"', mode="sidecar"))
    fast = encoder.json(o, "e-1")
    assert fast == dumps(build_event(o, encoder.origin, "e-1"))
    json_format.Parse(fast, MeteringEvent())


def test_event_ids_are_version_4_uuids() -> None:
    ids = {new_event_id() for _ in range(1_000)}
    assert len(ids) == 1_000
    for value in list(ids)[:50]:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == value


def test_events_no_broker_would_take_are_refused_with_a_reason() -> None:
    encoder = EventEncoder(ORIGIN)
    with pytest.raises(ValueError, match="tenant id"):
        encoder.encode(_outcome(tenant="t" * 5_000))
    with pytest.raises(ValueError, match="event of"):
        encoder.encode(_outcome(subject="s" * 300_000))
