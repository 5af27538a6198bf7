"""Snapshots from Envoy's tap: the tap request Link attaches, trace parsing, and the access-log join."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from link.events import Exchange, RequestOutcome
from link.model import Outcome, Request, RouteMatch
from link.settings import load_settings
from link.snapshots.tap import TapJoin, TapSubscriber, exchange_from_trace, status_regex, tap_request


def _settings(**kw: Any) -> Any:
    return load_settings(env={}, overrides={"snapshots.enabled": True, **{f"snapshots.{k}": v for k, v in kw.items()}})


@pytest.mark.parametrize(("five", "four", "regex"), [
    (True, False, "[5][0-9][0-9]"), (True, True, "[54][0-9][0-9]"), (False, True, "[4][0-9][0-9]"), (False, False, None),
])
def test_status_classes(five: bool, four: bool, regex: str | None) -> None:
    assert status_regex(five, four) == regex


def test_tap_request_matches_error_status_on_opted_in_paths() -> None:
    body = tap_request(_settings(body_excerpt_bytes=1024), ["/orders", "/pay/"])
    assert body is not None and body["config_id"] == "stoa_snapshots"
    cfg = body["tap_config"]
    rules = cfg["match"]["and_match"]["rules"]
    assert [r["http_request_headers_match"]["headers"][0]["string_match"]["prefix"]
            for r in rules[0]["or_match"]["rules"]] == ["/orders", "/pay/"]
    assert rules[1]["http_response_headers_match"]["headers"][0] == {
        "name": ":status", "string_match": {"safe_regex": {"regex": "[5][0-9][0-9]"}}}
    out = cfg["output_config"]
    # A binary format on the streaming admin sink aborts Envoy 1.40: JSON only.
    assert out["sinks"] == [{"format": "JSON_BODY_AS_BYTES", "streaming_admin": {}}]
    assert out["max_buffered_rx_bytes"] == out["max_buffered_tx_bytes"] == 1024
    one = tap_request(_settings(), ["/orders"])
    assert one is not None and "http_request_headers_match" in one["tap_config"]["match"]["and_match"]["rules"][0]
    anywhere = tap_request(_settings(), [])
    assert anywhere is not None and "http_response_headers_match" in anywhere["tap_config"]["match"]
    assert tap_request(_settings(capture_5xx=False, capture_4xx=False), ["/x"]) is None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _trace(status: str = "502", body: bytes = b'{"e":1}', truncated: bool = False, rid: str = "r-1",
           path: str = "/orders/1?x=1") -> dict[str, Any]:
    return {"http_buffered_trace": {
        "request": {"headers": [{"key": ":method", "value": "POST"}, {"key": ":path", "value": path},
                                {"key": ":authority", "value": "api.local"}, {"key": "x-request-id", "value": rid},
                                {"key": "Cookie", "value": "", "raw_value": _b64(b"a=1")},
                                {"key": "cookie", "value": "b=2"},
                                {"key": "traceparent",
                                 "value": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}],
                    "body": {"as_bytes": _b64(b'{"in":true}'), "truncated": False},
                    "headers_received_time": "2026-12-01T21:09:47.000000Z"},
        "response": {"headers": [{"key": ":status", "value": status}, {"key": "content-type", "value": "x/y"}],
                     "body": {"as_bytes": _b64(body), "truncated": truncated},
                     "headers_received_time": "2026-12-01T21:09:47.250000Z"}}}


def test_trace_to_exchange() -> None:
    ex = exchange_from_trace(_trace(), cap=4)
    assert ex is not None
    assert (ex.method, ex.path, ex.status, ex.request_id) == ("POST", "/orders/1?x=1", 502, "r-1")
    assert ex.request.headers["cookie"] == "a=1,b=2"  # raw_value decoded, repeats joined
    assert ":method" not in ex.request.headers and ex.request.headers[":authority"] == "api.local"
    assert ex.request.body == b'{"in' and ex.request.body_truncated  # capped at the excerpt size
    assert ex.response.headers == {"content-type": "x/y"}
    assert ex.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ex.timing_ms["upstream"] == pytest.approx(250.0)
    assert ex.outcome is Outcome.ERROR
    assert exchange_from_trace(_trace(truncated=True), cap=100).response.body_truncated  # type: ignore[union-attr]
    assert exchange_from_trace(_trace(status="abc"), cap=100).status == 0  # type: ignore[union-attr]
    assert exchange_from_trace({"http_streamed_trace_segment": {}}, cap=100) is None


class _Sink:
    def __init__(self) -> None:
        self.got: list[Exchange] = []

    def wants(self, status: int, tenant: str, route_snapshots: bool) -> bool:
        return status >= 500 and route_snapshots

    def offer(self, exchange: Exchange) -> None:
        self.got.append(exchange)


def _route(request: Request) -> RouteMatch | None:
    if request.path.startswith("/orders"):
        return RouteMatch(name="orders", tenant="acme", snapshots=True)
    return None


def _outcome(rid: str, status: int = 502) -> RequestOutcome:
    return RequestOutcome(request_id=rid, timestamp=0.0, method="POST", path="/orders/1", http_status=status,
                          outcome=Outcome.ERROR, decision_id="d" * 32, tenant="t1", consumer="c1", subject="s1",
                          route="orders", api="orders-api", latency_ms=9.0, t_backend_ms=7.0, t_link_ms=0.2,
                          scopes=["orders:read", "orders:write"], roles=["clerk"])


def _join(sink: _Sink, **kw: Any) -> TapJoin:
    return TapJoin(sink, _route, load_settings(env={}, overrides={}), **kw)


@pytest.mark.parametrize("tap_first", [True, False])
def test_join_in_either_order(tap_first: bool) -> None:
    sink = _Sink()
    join = _join(sink)
    ex = exchange_from_trace(_trace(), 100)
    assert ex is not None
    if tap_first:
        join.add(ex)
        assert sink.got == []
        join.offer(_outcome("r-1"))
    else:
        join.offer(_outcome("r-1"))
        join.add(ex)
    [got] = sink.got
    assert (got.decision_id, got.tenant, got.consumer, got.subject, got.api) == ("d" * 32, "t1", "c1", "s1",
                                                                                "orders-api")
    assert (got.scopes, got.roles) == (["orders:read", "orders:write"], ["clerk"])  # the caller's, joined
    assert got.timing_ms == {"link": 0.2, "upstream": 7.0, "total": 9.0}


def test_unjoined_exchanges_are_stored_after_the_wait_with_links_identity_headers() -> None:
    sink = _Sink()
    join = _join(sink, wait_s=1.0)
    trace = _trace(rid="r-2")
    trace["http_buffered_trace"]["request"]["headers"].append({"key": "x-stoa-tenant", "value": "acme-2"})
    ex = exchange_from_trace(trace, 100)
    assert ex is not None
    join.add(ex)
    assert join.expire(now=0.0) == 0 and sink.got == []
    assert join.expire(now=float("inf")) == 1
    [got] = sink.got
    assert (got.tenant, got.route, got.decision_id) == ("acme-2", "orders", "")


def test_successes_and_unwanted_routes() -> None:
    sink = _Sink()
    join = _join(sink)
    for i in range(100):
        join.offer(_outcome(f"ok-{i}", status=200))  # a 2xx is not even parked
    assert join._outcomes == {}
    ex = exchange_from_trace(_trace(path="/elsewhere", rid="r-3"), 100)
    assert ex is not None
    join.offer(_outcome("r-3"))
    join.add(ex)
    assert sink.got == []  # joined, but the route did not opt in


def test_parking_is_bounded_and_never_loses_an_exchange() -> None:
    sink = _Sink()
    join = _join(sink, max_pending=3)
    for i in range(5):
        ex = exchange_from_trace(_trace(rid=f"r-{i}"), 100)
        assert ex is not None
        join.add(ex)
    assert [e.request_id for e in sink.got] == ["r-0", "r-1"]  # overflow stored unjoined, oldest first
    for i in range(10):
        join.offer(_outcome(f"lost-{i}"))
    assert len(join._outcomes) == 3


def test_stream_parsing_across_chunks_and_garbage() -> None:
    sink = _Sink()
    join = _join(sink)
    sub = TapSubscriber("http://127.0.0.1:1", {}, join, 100)
    decoder = json.JSONDecoder()
    text = json.dumps(_trace(rid="a"), indent=1) + "\n" + json.dumps(_trace(rid="b"), indent=1) + "\n"
    buffer = ""
    for i in range(0, len(text), 97):  # arbitrary chunk boundaries
        buffer = sub._consume(decoder, buffer + text[i:i + 97])
    assert buffer == "" and sub.traces == 2
    join.offer(_outcome("a"))
    join.offer(_outcome("b"))
    assert [e.request_id for e in sink.got] == ["a", "b"]
    assert sub._consume(decoder, '{"not": "a trace"}\n') == "" and sub.traces == 3


def test_an_error_storm_is_skipped_unparsed_beyond_the_rate() -> None:
    sink = _Sink()
    join = _join(sink)
    sub = TapSubscriber("http://127.0.0.1:1", {}, join, 100, max_per_second=1.0)
    text = "".join(json.dumps(_trace(rid=f"s-{i}"), indent=1) + "\n" for i in range(5))
    assert sub._consume(json.JSONDecoder(), text) == ""
    assert sub.traces == 5
    for i in range(5):
        join.offer(_outcome(f"s-{i}"))
    assert [e.request_id for e in sink.got] == ["s-0"]  # a burst of one, the rest skipped


def test_a_whole_object_that_is_not_json_is_skipped() -> None:
    sink = _Sink()
    join = _join(sink)
    sub = TapSubscriber("http://127.0.0.1:1", {}, join, 100)
    text = "{\n not json\n}\n" + json.dumps(_trace(rid="after"), indent=1) + "\n"
    assert sub._consume(json.JSONDecoder(), text) == ""
    join.offer(_outcome("after"))
    assert [e.request_id for e in sink.got] == ["after"]



def test_a_local_reply_traced_without_its_request_is_skipped() -> None:
    """ext_authz refused the request before the tap filter: the trace has a response and no request."""
    sink = _Sink()
    join = _join(sink)
    sub = TapSubscriber("http://127.0.0.1:1", {}, join, 100)
    response_only = _trace(rid="z")
    response_only["http_buffered_trace"]["request"] = {}
    sub._consume(json.JSONDecoder(), json.dumps(response_only, indent=1) + "\n")
    join.expire(now=time.monotonic() + 60)
    assert sub.traces == 1 and sink.got == []
