"""Envoy adapters: CheckRequest/ProcessingRequest/access-log entries in, the project's types out."""

from __future__ import annotations

import json
from typing import Any

import pytest
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from google.protobuf import struct_pb2
from google.rpc import code_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from link.decision_metadata import RECORD_KEYS, link_key, record_from_wire
from link.events import Exchange
from link.grpc.accesslog import outcome_from_entry
from link.grpc.authz import METADATA_NAMESPACE, AuthorizationService, check_response, request_from_check
from link.grpc.extproc import ExternalProcessorService
from link.model import Decision, DecisionRecord, Outcome
from link.pipeline import build_pipeline
from tests.harness.link_server import link_settings

ROUTES = [
    {"name": "public", "prefix": "/public", "anonymous": True, "tenant": "demo", "snapshots": True},
    {"name": "private", "prefix": "/private"},
]


def _pipeline():  # type: ignore[no-untyped-def]
    return build_pipeline(link_settings({"ratelimit.enabled": False, "contracts.enabled": False}, routes=ROUTES))


def _check(path: str = "/public/a?x=1", headers: dict[str, str] | None = None) -> external_auth_pb2.CheckRequest:
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        id="1234", method="POST", path=path, host="api.example", scheme="https", protocol="HTTP/1.1",
        headers={"x-request-id": "rid-1", "content-type": "application/json", **(headers or {})},
        raw_body=b'{"a":1}',
    )
    attrs = attribute_context_pb2.AttributeContext(
        request=attribute_context_pb2.AttributeContext.Request(http=http),
        source=attribute_context_pb2.AttributeContext.Peer(
            address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address="10.0.0.9", port_value=5555)),
            principal="spiffe://cluster.local/ns/acme/sa/billing"),
        context_extensions={"route": "r1"},
    )
    return external_auth_pb2.CheckRequest(attributes=attrs)


def test_request_from_check_maps_every_field() -> None:
    req = request_from_check(_check())
    assert (req.method, req.path, req.query, req.host, req.scheme) == ("POST", "/public/a", "x=1", "api.example", "https")
    assert req.request_id == "rid-1"  # the header, not Envoy's stream id
    assert req.body == b'{"a":1}'
    assert (req.source_address, req.source_port) == ("10.0.0.9", 5555)
    assert req.peer is not None and req.peer.principal.startswith("spiffe://")
    assert req.context == {"route": "r1"}


def test_raw_header_map_is_read() -> None:
    check = _check()
    check.attributes.request.http.ClearField("headers")
    check.attributes.request.http.header_map.headers.add(key="X-Test", raw_value=b"one")
    check.attributes.request.http.header_map.headers.add(key="x-test", raw_value=b"two")
    assert request_from_check(check).headers["x-test"] == "one,two"


def test_allow_maps_to_ok_response() -> None:
    d = Decision(allowed=True, upstream_headers={"x-stoa-tenant": "acme"}, remove_headers=["x-stoa-evil"],
                 response_headers={"ratelimit-remaining": "9"}, record=DecisionRecord(tenant="acme", t_link_us=3))
    r = check_response(d)
    assert r.status.code == code_pb2.OK and r.HasField("ok_response")
    assert [(h.header.key, h.header.value) for h in r.ok_response.headers] == [("x-stoa-tenant", "acme")]
    assert list(r.ok_response.headers_to_remove) == ["x-stoa-evil"]
    assert r.ok_response.response_headers_to_add[0].header.key == "ratelimit-remaining"
    # Link's own fields carry its prefix on the wire (link.decision_metadata).
    assert r.dynamic_metadata["stoa.tenant"] == "acme" and r.dynamic_metadata["stoa.t_link_us"] == 3
    assert "tenant" not in r.dynamic_metadata


@pytest.mark.parametrize(("status", "grpc_code"), [(401, code_pb2.UNAUTHENTICATED), (403, code_pb2.PERMISSION_DENIED),
                                                   (429, code_pb2.RESOURCE_EXHAUSTED)])
def test_deny_maps_to_denied_response(status: int, grpc_code: int) -> None:
    d = Decision.deny(status, Outcome.POLICY_DENIED, "why", "because", {"retry-after": "3"})
    d.body = b'{"error":"x"}'
    r = check_response(d)
    assert r.status.code == grpc_code
    assert r.denied_response.status.code == status
    assert json.loads(r.denied_response.body) == {"error": "x"}
    keys = {h.header.key: h.header.value for h in r.denied_response.headers}
    assert keys == {"retry-after": "3", "content-type": "application/json"}


async def test_check_service_runs_the_pipeline() -> None:
    svc = AuthorizationService(_pipeline())
    ok = await svc.Check(_check("/public/x", {"x-stoa-tenant": "spoof"}), None)  # type: ignore[arg-type]
    assert ok.HasField("ok_response")
    headers = {h.header.key: h.header.value for h in ok.ok_response.headers}
    assert headers["x-stoa-tenant"] == "demo"
    assert ok.dynamic_metadata["stoa.route"] == "public" and ok.dynamic_metadata["stoa.outcome"] == "success"
    denied = await svc.Check(_check("/private/x"), None)  # type: ignore[arg-type]
    assert denied.denied_response.status.code == 401
    body = json.loads(denied.denied_response.body)
    assert body["request_id"] == "rid-1"


async def test_an_empty_check_request_is_an_anonymous_get_of_the_root() -> None:
    # Every field defaulted: a readable request (GET /, no credentials), so identity answers it.
    svc = AuthorizationService(_pipeline())
    r = await svc.Check(external_auth_pb2.CheckRequest(), None)  # type: ignore[arg-type]
    assert r.denied_response.status.code == 401 and r.status.code == code_pb2.UNAUTHENTICATED
    body = json.loads(r.denied_response.body)
    assert body["error"] == "unauthorized" and body["reason"] == "missing credentials" and body["request_id"]


UNREADABLE = [UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), ValueError("bad port"),
              AttributeError("no field"), KeyError("header"), OverflowError("timestamp")]


@pytest.mark.parametrize("error", UNREADABLE, ids=[type(e).__name__ for e in UNREADABLE])
async def test_a_check_request_that_cannot_be_read_is_a_400_not_a_crash(
        monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    # No well-typed CheckRequest makes the mapping fail today; the branch guards against what a
    # future field or Envoy version might bring, so the mapping is made to fail here.
    import link.grpc.authz as authz

    def unreadable(check: external_auth_pb2.CheckRequest) -> Any:
        raise error

    monkeypatch.setattr(authz, "request_from_check", unreadable)
    r = await AuthorizationService(_pipeline()).Check(_check("/public/x"), None)  # type: ignore[arg-type]
    assert r.denied_response.status.code == 400 and r.status.message == "bad_request"
    assert not r.HasField("ok_response")
    assert json.loads(r.denied_response.body) == {"error": "bad_request", "reason": "malformed request attributes"}


# -- ext_proc ---------------------------------------------------------------

def _hdrs(pairs: dict[str, str], eos: bool = False) -> ep.HttpHeaders:
    return ep.HttpHeaders(headers=base_pb2.HeaderMap(
        headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]), end_of_stream=eos)


class _Sink:
    def __init__(self) -> None:
        self.got: list[Exchange] = []

    def wants(self, status: int, tenant: str, route_snapshots: bool) -> bool:
        return route_snapshots and status >= 500

    def offer(self, exchange: Exchange) -> None:
        self.got.append(exchange)


async def _run(svc: ExternalProcessorService, msgs: list[ep.ProcessingRequest]) -> list[ep.ProcessingResponse]:
    async def it():  # type: ignore[no-untyped-def]
        for m in msgs:
            yield m
    return [r async for r in svc.Process(it(), None)]  # type: ignore[arg-type]


def _authz_meta(**kw: Any) -> ep.ProcessingRequest:
    s = struct_pb2.Struct()
    fields = {"decision_id": "d1", "tenant": "demo", "consumer": "anonymous", "outcome": "success",
              "credential": "anonymous", **kw}
    s.update({link_key(k): v for k, v in fields.items()})
    msg = ep.ProcessingRequest()
    msg.metadata_context.filter_metadata[METADATA_NAMESPACE].CopyFrom(s)
    return msg


async def test_ext_proc_answers_every_message_once_and_captures_errors() -> None:
    sink = _Sink()
    svc = ExternalProcessorService(_pipeline(), lambda: sink, body_cap=8)
    first = _authz_meta()
    first.request_headers.CopyFrom(_hdrs({":method": "POST", ":path": "/public/a?q=1", "x-request-id": "r9"}))
    msgs = [
        first,
        ep.ProcessingRequest(request_body=ep.HttpBody(body=b"0123456789abc", end_of_stream=True)),
        ep.ProcessingRequest(request_trailers=ep.HttpTrailers()),
        ep.ProcessingRequest(response_headers=_hdrs({":status": "503", "content-type": "text/plain"})),
        ep.ProcessingRequest(response_body=ep.HttpBody(body=b"upstream exploded", end_of_stream=True)),
        ep.ProcessingRequest(response_trailers=ep.HttpTrailers()),
    ]
    out = await _run(svc, msgs)
    kinds = [r.WhichOneof("response") for r in out]
    assert kinds == ["request_headers", "request_body", "request_trailers", "response_headers", "response_body",
                     "response_trailers"]
    set_headers = {h.header.key: h.header.raw_value for h in
                   out[3].response_headers.response.header_mutation.set_headers}
    assert set_headers == {"x-request-id": b"r9"}
    assert len(sink.got) == 1
    ex = sink.got[0]
    assert (ex.status, ex.tenant, ex.route, ex.decision_id, ex.path) == (503, "demo", "public", "d1", "/public/a?q=1")
    assert ex.request.body == b"01234567" and ex.request.body_truncated
    assert ex.response.body == b"upstream" and ex.response.body_truncated


@pytest.mark.parametrize(("path", "status", "with_sink", "body_wanted"), [
    ("/public/a", "503", True, True),  # a snapshot route, a status the sink wants: the body comes
    ("/public/a", "200", True, False),  # a status the sink does not want
    ("/public/a", "404", True, False),
    ("/public/a", "503", False, False),  # no snapshot sink at all
    ("/private/a", "503", True, False),  # a route that did not opt in to snapshots
    ("/nowhere", "503", True, False),  # no route
])
async def test_ext_proc_asks_for_a_response_body_only_when_it_snapshots_it(
        path: str, status: str, with_sink: bool, body_wanted: bool) -> None:
    """Any other response body streams past ext_proc: Link answers its headers with body mode NONE, so
    Envoy neither buffers it (a body over the stream's buffer limit could stall the client in Envoy's
    partial buffering) nor sends it for nothing. A wanted body streams in chunks, never buffered whole."""
    from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as pm

    sink = _Sink()
    svc = ExternalProcessorService(_pipeline(), (lambda: sink) if with_sink else (lambda: None))
    first = _authz_meta()
    first.request_headers.CopyFrom(_hdrs({":method": "GET", ":path": path}, eos=True))
    out = await _run(svc, [first, ep.ProcessingRequest(response_headers=_hdrs({":status": status}))])
    answer = out[1]
    assert answer.WhichOneof("response") == "response_headers"
    if body_wanted:
        assert not answer.HasField("mode_override")
    else:
        assert answer.HasField("mode_override")
        mode = answer.mode_override
        assert mode.response_body_mode == pm.ProcessingMode.NONE
        assert mode.response_trailer_mode == pm.ProcessingMode.SKIP


async def test_a_response_without_a_body_needs_no_mode_override() -> None:
    svc = ExternalProcessorService(_pipeline(), lambda: _Sink())
    first = _authz_meta()
    first.request_headers.CopyFrom(_hdrs({":method": "GET", ":path": "/public/a"}, eos=True))
    out = await _run(svc, [first, ep.ProcessingRequest(response_headers=_hdrs({":status": "204"}, eos=True))])
    assert not out[1].HasField("mode_override")


async def test_ext_proc_decides_when_ext_authz_did_not() -> None:
    svc = ExternalProcessorService(_pipeline(), lambda: None)
    refused = await _run(svc, [ep.ProcessingRequest(request_headers=_hdrs({":method": "GET", ":path": "/private"}))])
    assert refused[0].immediate_response.status.code == 401
    assert refused[0].dynamic_metadata.fields[METADATA_NAMESPACE].struct_value["stoa.outcome"] == "unauthenticated"
    allowed = await _run(svc, [ep.ProcessingRequest(request_headers=_hdrs({":method": "GET", ":path": "/public"}))])
    mutation = allowed[0].request_headers.response.header_mutation
    assert {h.header.key for h in mutation.set_headers} >= {"x-stoa-tenant", "x-request-id"}


async def test_ext_proc_observability_mode_gets_no_answers() -> None:
    svc = ExternalProcessorService(_pipeline(), lambda: None)
    msg = _authz_meta()
    msg.request_headers.CopyFrom(_hdrs({":method": "GET", ":path": "/public"}))
    msg.observability_mode = True
    assert await _run(svc, [msg]) == []


async def test_ext_proc_survives_odd_sequences() -> None:
    svc = ExternalProcessorService(_pipeline(), lambda: _Sink())
    # Body before headers, empty messages, a response with a garbage status: answered, never raised.
    out = await _run(svc, [
        ep.ProcessingRequest(request_body=ep.HttpBody(body=b"x", end_of_stream=True)),
        ep.ProcessingRequest(),
        ep.ProcessingRequest(response_headers=_hdrs({":status": "abc"})),
    ])
    assert [r.WhichOneof("response") for r in out] == ["request_body", "response_headers"]


# -- access log -------------------------------------------------------------

def _entry(status: int, meta: dict[str, Any] | None) -> accesslog_pb2.HTTPAccessLogEntry:
    e = accesslog_pb2.HTTPAccessLogEntry()
    e.common_properties.start_time.FromSeconds(1_700_000_000)
    e.common_properties.time_to_last_downstream_tx_byte.FromMilliseconds(12)
    e.common_properties.time_to_first_upstream_tx_byte.FromMilliseconds(2)
    e.common_properties.time_to_last_upstream_rx_byte.FromMilliseconds(10)
    e.request.request_method = base_pb2.POST
    e.request.path = "/orders/7?x=1"
    e.request.request_id = "rid"
    e.request.request_headers_bytes = 100
    e.request.request_body_bytes = 20
    e.request.request_headers["traceparent"] = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    e.response.response_code.value = status
    e.response.response_headers_bytes = 50
    e.response.response_body_bytes = 5
    if meta is not None:
        s = struct_pb2.Struct()
        s.update({link_key(k): v for k, v in meta.items()})
        e.common_properties.metadata.filter_metadata[METADATA_NAMESPACE].CopyFrom(s)
    return e


def test_access_log_entry_joined_with_decision() -> None:
    o = outcome_from_entry(_entry(200, {"outcome": "success", "tenant": "acme", "consumer": "app", "route": "orders",
                                        "route_template": "/orders/{id}", "scopes": "a b", "decision_id": "d",
                                        "t_link_us": 150}))
    assert (o.method, o.path, o.http_status, o.outcome, o.tenant, o.consumer) == (
        "POST", "/orders/7", 200, Outcome.SUCCESS, "acme", "app")
    assert o.scopes == ["a", "b"] and o.route_template == "/orders/{id}" and o.trace_id == "a" * 32
    assert (o.latency_ms, o.t_backend_ms, o.t_gateway_ms, o.t_link_ms) == (12.0, 8.0, 4.0, 0.15)
    assert (o.request_size_bytes, o.response_size_bytes) == (120, 55)


@pytest.mark.parametrize(("status", "meta", "outcome"), [
    (502, {"outcome": "success"}, Outcome.ERROR),
    (404, {"outcome": "success"}, Outcome.NOT_FOUND),
    (429, {"outcome": "rate_limited"}, Outcome.RATE_LIMITED),
    (503, None, Outcome.ERROR),
    (200, None, Outcome.SUCCESS),
])
def test_access_log_outcome(status: int, meta: dict[str, Any] | None, outcome: Outcome) -> None:
    assert outcome_from_entry(_entry(status, meta)).outcome is outcome


async def test_refusals_reach_the_snapshot_sink() -> None:
    class _All(_Sink):
        def wants(self, status: int, tenant: str, route_snapshots: bool) -> bool:
            return status >= 400

    sink = _All()
    svc = AuthorizationService(_pipeline(), lambda: sink, body_cap=4)
    denied = await svc.Check(_check("/private/x"), None)  # type: ignore[arg-type]
    await svc.Check(_check("/public/x"), None)  # type: ignore[arg-type]
    assert len(sink.got) == 1
    ex = sink.got[0]
    assert (ex.status, ex.method, ex.path, ex.route, ex.outcome) == (401, "POST", "/private/x", "private",
                                                                     Outcome.UNAUTHENTICATED)
    # Both bodies are cut at the cap: the request's says so, the refusal's is the start of what was sent.
    assert ex.request.body == b'{"a"' and ex.request.body_truncated
    sent = denied.denied_response.body.encode()
    assert len(sent) > 4 and ex.response.body == sent[:4]
    assert ex.decision_id and ex.reason


async def test_a_cut_refusal_body_says_it_was_cut() -> None:
    class _All(_Sink):
        def wants(self, status: int, tenant: str, route_snapshots: bool) -> bool:
            return status >= 400

    sink = _All()
    await AuthorizationService(_pipeline(), lambda: sink, body_cap=4).Check(_check("/private/x"), None)  # type: ignore[arg-type]
    assert sink.got[0].response.body_truncated


async def test_a_refusal_snapshot_holds_the_body_the_client_got() -> None:
    class _All(_Sink):
        def wants(self, status: int, tenant: str, route_snapshots: bool) -> bool:
            return status >= 400

    sink = _All()
    svc = AuthorizationService(_pipeline(), lambda: sink, body_cap=4096)
    denied = await svc.Check(_check("/private/x"), None)  # type: ignore[arg-type]
    ex = sink.got[0]
    assert ex.response.body == denied.denied_response.body.encode() and not ex.response.body_truncated
    assert json.loads(ex.response.body) == {"error": "unauthorized", "reason": "missing credentials",
                                            "request_id": "rid-1"}
    assert ex.request.body == b'{"a":1}' and not ex.request.body_truncated


def _message_of(n: int) -> Any:
    """One access-log message of ``n`` successful entries."""
    from envoy.service.accesslog.v3 import als_pb2

    message = als_pb2.StreamAccessLogsMessage()
    for _ in range(n):
        message.http_logs.log_entry.add().CopyFrom(_entry(200, {"outcome": "success"}))
    return message


async def test_a_large_access_log_message_lets_waiting_checks_run_between_slices() -> None:
    """A message holds a flush interval's worth of requests; the loop must not be held for all of it."""
    import asyncio

    from link.events import OutcomeBus, RequestOutcome
    from link.grpc.accesslog import AccessLogService

    seen: list[str] = []

    class _Sink:
        def offer(self, outcome: RequestOutcome) -> None:
            seen.append("entry")

    bus = OutcomeBus()
    bus.add(_Sink())
    message = _message_of(100)

    async def stream() -> Any:
        yield message

    async def a_waiting_check() -> None:
        seen.append("check")

    check = asyncio.get_running_loop().create_task(a_waiting_check())
    await AccessLogService(bus).StreamAccessLogs(stream(), None)  # type: ignore[arg-type]
    await check
    assert seen.count("entry") == 100
    assert 0 < seen.index("check") < 100  # it ran while the message was being read, not after it


async def test_a_large_access_log_message_is_written_ahead_slice_by_slice() -> None:
    """Each slice is committed before the loop yields: a crash mid-message loses at most one slice,
    and no commit encodes a whole flush interval's worth of events on the loop at once."""
    from link.events import OutcomeBus, RequestOutcome
    from link.grpc import accesslog
    from link.grpc.accesslog import AccessLogService

    pending: list[int] = [0]
    commits: list[int] = []

    class _Durable:
        def offer(self, outcome: RequestOutcome) -> None:
            pending[0] += 1

        def commit(self) -> None:
            commits.append(pending[0])
            pending[0] = 0

    bus = OutcomeBus()
    bus.add(_Durable())
    message = _message_of(100)

    async def stream() -> Any:
        yield message
        yield message

    await AccessLogService(bus).StreamAccessLogs(stream(), None)  # type: ignore[arg-type]
    assert sum(commits) == 200 and pending[0] == 0  # every entry committed, none left behind
    assert len(commits) >= 2 * -(-100 // accesslog._SLICE_ENTRIES)  # one commit per slice at least
    assert max(commits) <= accesslog._SLICE_ENTRIES and 0 not in commits  # no empty commits


def test_the_start_up_heap_is_frozen_out_of_full_collections() -> None:
    import gc

    from link.heap import freeze_start_up_heap

    try:
        assert freeze_start_up_heap() > 0 and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # this process is the test runner's, not a Link server's


def test_access_log_metadata_reads_links_keys_of_every_value_type_and_skips_the_policys() -> None:
    from google.protobuf import struct_pb2

    from link.grpc.accesslog import _record_of

    ns = struct_pb2.Struct()
    ns.update({"decision_id": "d1", link_key("tenant"): "acme", link_key("t_link_us"): 48.0,
               link_key("ratelimit_applied"): True, link_key("scopes"): ["a", "b"], link_key("reason"): "",
               "tenant": "the policy's own", "stoa.unknown": "x"})
    assert _record_of(ns) == DecisionRecord(decision_id="d1", tenant="acme", t_link_us=48, ratelimit_applied=True,
                                            scopes=("a", "b"))
    assert _record_of(None) == DecisionRecord() == _record_of(struct_pb2.Struct())


_WIRE_VALUES = st.one_of(st.text(max_size=8), st.integers(-10, 10**6).map(float), st.booleans(),
                         st.lists(st.text(min_size=1, max_size=4), max_size=3), st.none())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([*sorted(RECORD_KEYS), "tenant", "stoa.unknown", "x"]), _WIRE_VALUES))
def test_access_log_metadata_reads_as_record_from_wire_reads_the_same_metadata(meta: dict[str, Any]) -> None:
    """The feed's one-pass reader and the reference reader agree on any metadata Envoy may hold."""
    from google.protobuf import json_format, struct_pb2

    from link.grpc.accesslog import _record_of

    ns = struct_pb2.Struct()
    ns.update(meta)
    assert _record_of(ns) == record_from_wire(json_format.MessageToDict(ns))
