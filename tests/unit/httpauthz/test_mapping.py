"""The HTTP ext_authz adapter: checks -> Request, Decision -> response bytes, and what the generator agrees on."""

from __future__ import annotations

from typing import Any

import httptools
import pytest

from link.decision_metadata import record_from_wire
from link.envoyconf.bootstrap import EnvoyOptions, build_bootstrap
from link.grpc.authz import check_response
from link.httpauthz.mapping import request_from_check, response_bytes
from link.httpauthz.wire import (
    META_PREFIX,
    RESERVED_STATUSES,
    client_status,
    wire_status,
)
from link.model import Decision, DecisionRecord, Outcome, PolicyEffects


@pytest.mark.parametrize(("status", "wire"), [
    (200, 489), (400, 400), (401, 401), (403, 403), (413, 413), (429, 429),
    (500, 490), (502, 492), (503, 493), (504, 494), (509, 499), (510, 490), (599, 490),
])
def test_5xx_decisions_travel_as_reserved_statuses(status: int, wire: int) -> None:
    assert wire_status(status) == wire
    assert not 500 <= wire <= 599  # Envoy would take any 5xx for Link failing
    assert wire != 200  # ... and a 200 for an allow
    if status <= 509:
        assert client_status(wire) == status


def _find(node: Any, key: str) -> list[Any]:
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                found.append(v)
            found += _find(v, key)
    elif isinstance(node, list):
        for v in node:
            found += _find(v, key)
    return found


def test_the_generator_maps_every_reserved_status_back_and_only_for_ext_authz_denials() -> None:
    boot = build_bootstrap(EnvoyOptions())
    (local_reply,) = _find(boot, "localReplyConfig")
    mapped = {}
    ours = [m for m in local_reply["mappers"] if "andFilter" in m["filter"]]
    assert local_reply["mappers"][:len(ours)] == ours  # first: a reserved status is never another mapper's
    for mapper in ours:
        status_filter, flag_filter = mapper["filter"]["andFilter"]["filters"]
        reserved = status_filter["statusCodeFilter"]["comparison"]["value"]["defaultValue"]
        assert flag_filter["responseFlagFilter"]["flags"] == ["UAEX"]  # ext_authz denied it
        assert "body" not in mapper and "bodyFormatOverride" not in mapper  # Link's body and headers kept
        mapped[reserved] = mapper["statusCode"]
    assert mapped == {r: client_status(r) for r in RESERVED_STATUSES}
    (grpc,) = _find(build_bootstrap(EnvoyOptions(authz_transport="grpc")), "localReplyConfig")
    assert not [m for m in grpc["mappers"] if "andFilter" in m["filter"]]


def test_a_check_becomes_a_request_with_envoys_attributes() -> None:
    headers = {
        "host": "api.example", "x-api-key": "k", "x-request-id": "rid-1", "traceparent": "00-" + "a" * 32 + "-"
        + "b" * 16 + "-01", "stoa-envoy-source": "10.0.0.7:5555", "stoa-envoy-destination": "10.0.0.1:8080",
        "stoa-envoy-scheme": "https", "stoa-envoy-protocol": "HTTP/2", "stoa-envoy-peer-uri-san":
        "spiffe://cluster.local/ns/acme/sa/app", "stoa-envoy-peer-subject": "CN=app",
        "stoa-envoy-peer-cert": "-----BEGIN%20CERTIFICATE-----%0AMII%0A-----END%20CERTIFICATE-----%0A",
        "stoa-envoy-peer-dns-san": "-",
    }
    req = request_from_check("POST", "/check/orders/1?x=1&y=2", dict(headers), b'{"a":1}')
    assert (req.method, req.path, req.query, req.host, req.scheme) == ("POST", "/orders/1", "x=1&y=2",
                                                                         "api.example", "https")
    assert (req.source_address, req.source_port, req.destination_address, req.destination_port) == (
        "10.0.0.7", 5555, "10.0.0.1", 8080)
    assert req.protocol == "HTTP/2" and req.request_id == "rid-1" and req.body == b'{"a":1}'
    assert req.peer is not None and req.peer.principal == "spiffe://cluster.local/ns/acme/sa/app"
    assert req.peer.certificate_pem.startswith("-----BEGIN CERTIFICATE-----\nMII")
    assert req.peer.dns_sans == ()  # Envoy writes "-" for an empty operator
    assert not [h for h in req.headers if h.startswith("stoa-envoy-")]
    assert req.context == {}  # the traceparent is the client's: Envoy did not say it traces


def test_without_tls_there_is_no_peer_and_envoys_trace_context_is_taken_when_it_traces() -> None:
    tp = "00-" + "c" * 32 + "-" + "d" * 16 + "-01"
    req = request_from_check("GET", "/check", {"stoa-envoy-peer-uri-san": "-", "stoa-envoy-peer-cert": "",
                                               "stoa-envoy-traced": "1", "traceparent": tp}, None)
    assert req.path == "/" and req.peer is None and req.context == {"traceparent": tp}


def _parse(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    class P:
        headers: list[tuple[str, str]] = []
        body = b""

        def on_header(self, n: bytes, v: bytes) -> None:
            self.headers.append((n.decode().lower(), v.decode()))

        def on_body(self, b: bytes) -> None:
            self.body += b

    p = P()
    p.headers = []
    parser = httptools.HttpResponseParser(p)
    parser.feed_data(raw)
    return parser.get_status_code(), p.headers, p.body


def _envoy_metadata(headers: list[tuple[str, str]]) -> dict[str, str]:
    """What Envoy's dynamic_metadata_from_headers files (the generator's patterns)."""
    return {n: v for n, v in headers if n.startswith(("stoa.", META_PREFIX)) or n == "decision_id"}


def _allowed() -> Decision:
    return Decision(allowed=True, upstream_headers={"x-stoa-tenant": "acme", "x-request-id": "r1"},
                    remove_headers=["x-stoa-evil", "x-stoa-other"],
                    response_headers={"x-request-id": "r1", "ratelimit-remaining": "4"},
                    record=DecisionRecord(tenant="acme", outcome="success", t_link_us=87, ratelimit_applied=True,
                                          scopes=("a", "b"), roles=("x", "y"), reason=""))


def _denied(status: int) -> Decision:
    d = Decision.deny(status, Outcome.ERROR, "policy_unavailable", "policy unavailable", {"retry-after": "1"})
    d.body = b'{"error":"unavailable"}'
    d.record = DecisionRecord(outcome="error", reason="policy_unavailable")
    return d


def test_an_allow_carries_upstream_headers_removals_client_headers_and_flat_metadata() -> None:
    status, headers, body = _parse(response_bytes(_allowed()))
    assert status == 200 and body == b""
    h = dict(headers)
    assert h["x-stoa-tenant"] == "acme" and h["x-envoy-auth-headers-to-remove"] == "x-stoa-evil,x-stoa-other"
    assert h["ratelimit-remaining"] == "4"
    assert [n for n, _ in headers].count("x-request-id") == 1  # same value upstream and to the client: once
    meta = _envoy_metadata(headers)
    assert meta == {"stoa.tenant": "acme", "stoa.outcome": "success", "stoa.t_link_us": "87",
                    "stoa.ratelimit_applied": "true", "stoa.scopes": "a b", "stoa.roles": "x y"}
    assert record_from_wire(meta) == _allowed().record


@pytest.mark.parametrize("status", [401, 403, 429, 500, 503])
def test_a_denial_carries_its_status_headers_and_body(status: int) -> None:
    wire, headers, body = _parse(response_bytes(_denied(status)))
    assert wire == wire_status(status) and client_status(wire) == status
    h = dict(headers)
    assert h["retry-after"] == "1" and h["content-type"] == "application/json"
    assert body == b'{"error":"unavailable"}'
    assert record_from_wire(_envoy_metadata(headers)) == DecisionRecord(outcome="error", reason="policy_unavailable")


def test_values_cannot_inject_headers_and_bad_metadata_names_are_dropped() -> None:
    d = _allowed()
    d.upstream_headers["x-stoa-subject"] = "alice\r\nx-stoa-tenant: evil"
    d.record = DecisionRecord(reason="a\nb\x00c", subject="é")
    d.policy = PolicyEffects(metadata={"bad name": "x", "ünicode": "y", "ok_key": "é"})
    raw = response_bytes(d)
    status, headers, _ = _parse(raw)
    assert status == 200
    assert [v for n, v in headers if n == "x-stoa-tenant"] == ["acme"]
    assert dict(headers)["x-stoa-subject"] == "alice  x-stoa-tenant: evil"
    meta = _envoy_metadata(headers)
    assert meta == {"stoa.reason": "a b c", "stoa.subject": "é", META_PREFIX + "ok_key": "é"}


@pytest.mark.parametrize("decision", [_allowed(), _denied(403), _denied(503)], ids=["allow", "deny-403", "deny-503"])
def test_both_transports_carry_the_same_decision(decision: Decision) -> None:
    """What the access log and the client get is the same whichever transport Envoy used."""
    grpc = check_response(decision)
    status, headers, body = _parse(response_bytes(decision))
    grpc_meta = {k: v.string_value or (str(int(v.number_value)) if v.HasField("number_value") else None)
                 for k, v in grpc.dynamic_metadata.fields.items()}
    http_meta = _envoy_metadata(headers)  # the same keys Envoy holds on gRPC
    for key, value in grpc_meta.items():
        if value is not None and value != "":
            assert http_meta[key] == value
    if decision.allowed:
        assert grpc.ok_response is not None and status == 200
        assert {h.header.key: h.header.value for h in grpc.ok_response.headers}.items() <= dict(headers).items()
        assert list(grpc.ok_response.headers_to_remove) == dict(headers)["x-envoy-auth-headers-to-remove"].split(",")
    else:
        assert grpc.denied_response.status.code == decision.http_status == client_status(status)
        assert grpc.denied_response.body.encode() == body


def test_metadata_is_bounded_so_envoy_never_fails_the_check() -> None:
    """Too many or too large headers fail the check in Envoy, and a failed check passes when fail-open."""
    from link.httpauthz.mapping import MAX_META_BYTES, MAX_META_HEADERS, MAX_META_VALUE

    d = _denied(403)
    d.policy = PolicyEffects(metadata={f"k{i}": "v" * 10_000 for i in range(500)})  # a policy's own keys
    raw = response_bytes(d)
    _, headers, _ = _parse(raw)
    meta = list(_envoy_metadata(headers).items())
    assert 0 < len(meta) <= MAX_META_HEADERS and all(len(v) == MAX_META_VALUE for _, v in meta)
    assert len(raw) < MAX_META_BYTES + 1_024 < 128 * 1024  # the Link cluster's max_response_headers_kb
    d.policy = PolicyEffects(metadata={f"k{i}": "v" for i in range(500)})
    _, headers, _ = _parse(response_bytes(d))
    assert len(_envoy_metadata(headers)) == MAX_META_HEADERS
    assert len(headers) < 256  # the Link cluster's max_headers_count


def _with_policy(decision: Decision, **effects: Any) -> Decision:
    decision.policy = PolicyEffects(**effects)
    return decision


def test_the_policys_headers_and_metadata_travel_like_opa_envoys() -> None:
    d = _with_policy(_allowed(), upstream_headers=[("x-policy", "1"), ("x-policy", "2")],
                     response_headers=[("x-policy-resp", "r")], metadata={"team": "billing", "stoa.tenant": "evil"})
    _, headers, _ = _parse(response_bytes(d))
    assert [v for n, v in headers if n == "x-policy"] == ["1", "2"] and ("x-policy-resp", "r") in headers
    meta = _envoy_metadata(headers)
    assert meta[META_PREFIX + "team"] == "billing"  # the policy's own key, under its prefix on HTTP
    assert meta["stoa.tenant"] == "acme"  # the prefix is Link's: a policy cannot overwrite its fields


def test_a_policy_refusal_is_sent_as_the_policy_wrote_it() -> None:
    d = _with_policy(Decision.deny(418, Outcome.POLICY_DENIED, "policy_denied", "no"),
                     response_headers=[("x-why", "teapot")])
    d.policy_response, d.body = True, b"short and stout"
    status, headers, body = _parse(response_bytes(d))
    assert status == 418 and ("x-why", "teapot") in headers and body == b"short and stout"
    assert "content-type" not in dict(headers)


@pytest.mark.parametrize("effects", [{"query_to_set": [("a", "1")]}, {"query_to_remove": ["token"]}])
def test_query_rewrites_cannot_travel_over_http_so_the_request_is_refused(effects: dict[str, Any]) -> None:
    """HTTP ext_authz has no query mutation: passing the request unchanged could forward what the
    policy meant to strip, so it is refused with Link's 500 (never a real 5xx that fail-open passes)."""
    status, headers, body = _parse(response_bytes(_with_policy(_allowed(), **effects)))
    assert status == wire_status(500) and b"authz_transport: grpc" in body
    assert record_from_wire(_envoy_metadata(headers)).reason == "policy_unsupported"
