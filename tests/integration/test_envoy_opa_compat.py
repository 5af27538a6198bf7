"""OPA-Envoy policies, unchanged, through Link and the real Envoy: each answer is the one OPA-Envoy gives.

The policies are written the way OPA's Envoy primer writes them (boolean ``allow``
rules on ``input.attributes.request.http``, ``parsed_path``, ``parsed_query``,
``parsed_body``, ``io.jwt.decode``; object results with headers, removals, query
changes, status and body; a custom decision path). Each case states what
OPA-Envoy answers behind the same Envoy (read from its ``envoyauth`` and
``internal`` packages, and from Envoy's handling of its ``CheckResponse``, which
Link reproduces field for field): status, body bytes, client headers, and what
the upstream received. Where Link answers differently on purpose, the case says
so (docs/opa-envoy.md lists every difference).

Every case runs on every decision transport Link offers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from google.protobuf import json_format

import link.grpc.accesslog as accesslog
from link.settings import ServerSettings
from tests.harness.procs import wait_until
from tests.harness.sidecar import Sidecar

pytestmark = pytest.mark.integration

EXT_AUTHZ = "envoy.filters.http.ext_authz"
MAX_BODY = 1024  # with_request_body.max_request_bytes of the Envoy under test

TRANSPORTS = ("grpc", "http")


def _transport_available(transport: str) -> str | None:
    """None when Link offers the transport, else why not."""
    if transport == "grpc":
        return None
    if "authz_transport" not in ServerSettings.model_fields:
        return "the HTTP ext_authz transport (server.authz_transport) is not in this branch yet"
    return None


def _jwt(payload: dict[str, Any]) -> str:
    """An unsigned-looking JWT: io.jwt.decode does not verify, exactly like the primer's policies."""
    def seg(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{seg({'alg': 'HS256', 'typ': 'JWT'})}.{seg(payload)}.c2lnbmF0dXJl"


GUEST = _jwt({"role": "guest", "sub": "YWxpY2U=", "nbf": 1514851139, "exp": 1941081539})
ADMIN = _jwt({"role": "admin", "sub": "Ym9i", "nbf": 1514851139, "exp": 1941081539})

# -- the policies ---------------------------------------------------------------------------------

PRIMER = """
package envoy.authz

import rego.v1

import input.attributes.request.http as http_request

default allow := false

token := {"valid": valid, "payload": payload} if {
	[_, encoded] := split(http_request.headers.authorization, " ")
	[_, payload, _] := io.jwt.decode(encoded)
	valid := payload.nbf <= 1800000000
}

allow if {
	token.valid
	action_allowed
}

action_allowed if {
	http_request.method == "GET"
	token.payload.role == "guest"
	glob.match("/people*", ["/"], http_request.path)
}

action_allowed if {
	http_request.method == "GET"
	token.payload.role == "admin"
	glob.match("/people*", ["/"], http_request.path)
}

action_allowed if {
	http_request.method == "POST"
	token.payload.role == "admin"
	glob.match("/people", ["/"], http_request.path)
	lower(input.parsed_body.firstname) != base64url.decode(token.payload.sub)
}

# Segments are percent-decoded.
allow if {
	http_request.method == "GET"
	input.parsed_path == ["directory", "Charlie Opa"]
}

allow if {
	input.parsed_path[0] == "search"
	input.parsed_query.lang == ["en"]
	input.parsed_query.q == ["a b"]
}

allow if {
	http_request.headers["x-api-version"] == "2"
	input.parsed_path == ["versioned"]
}

# A body Envoy cut at max_request_bytes is not parsed.
allow if {
	input.parsed_path == ["uploads"]
	input.truncated_body
	input.parsed_body == null
}

allow if {
	input.parsed_path == ["uploads"]
	not input.truncated_body
	input.parsed_body.kind == "small"
}

# A policy that lets requests without a body through: malformed JSON must never reach it.
allow if {
	input.parsed_path == ["lenient"]
	not input.parsed_body.forbidden
}
"""

FORMS = """
package envoy.authz

import rego.v1

default allow := false

allow if {
	input.parsed_path == ["forms", "approve"]
	input.parsed_body.action == ["approve"]
	input.parsed_body.reason == ["looks good", "second"]
}

allow if {
	input.parsed_path == ["forms", "upload"]
	input.parsed_body.meta[0].kind == "invoice"
	input.parsed_body.note == ["hello world"]
	count(input.parsed_body.file) == 1
}
"""

OBJECT = """
package envoy.authz

import rego.v1

import input.attributes.request.http as http_request

default allow := false

allow if http_request.method == "GET"

headers["x-ext-auth-allow"] := "yes"
headers["x-validated-by"] := "security-checkpoint"
headers["x-multi"] := ["one", "two"]

request_headers_to_remove := ["one-auth-header", "another-auth-header"]

response_headers_to_add["x-foo"] := "bar"
response_headers_to_add["set-cookie"] := ["a=1", "b=2"]

query_parameters_to_set["added"] := "1"
query_parameters_to_set["lang"] := ["en", "fr"]

query_parameters_to_remove := ["token"]

status_code := 200 if allow else := 401 if {
	not http_request.headers.authorization
} else := 403

body := "Authentication Failed" if status_code == 401
body := "Unauthorized Request" if status_code == 403

dynamic_metadata := {"checked_by": "opa"}

result["allowed"] := allow
result["headers"] := headers
result["response_headers_to_add"] := response_headers_to_add
result["request_headers_to_remove"] := request_headers_to_remove
result["query_parameters_to_set"] := query_parameters_to_set
result["query_parameters_to_remove"] := query_parameters_to_remove
result["body"] := body
result["http_status"] := status_code
result["dynamic_metadata"] := dynamic_metadata
"""

RESPONSES = """
package envoy.authz

import rego.v1

import input.attributes.request.http as http_request

default result := {"allowed": false, "http_status": 302, "headers": {"location": "https://login.example.com/?next=app"}}

result := {"allowed": true} if http_request.headers.cookie == "session=ok"

result := {
	"allowed": false,
	"http_status": 429,
	"headers": {"content-type": "application/json", "retry-after": "30"},
	"body": "{\\"message\\": \\"slow down\\"}",
} if input.parsed_path == ["busy"]

result := {"allowed": false, "http_status": 418, "body": "teapot"} if input.parsed_path == ["teapot"]

result := {"allowed": false, "http_status": 299} if input.parsed_path == ["odd"]

result := {"allowed": false, "body": {"not": "a string"}} if input.parsed_path == ["object-body"]

result := {"allowed": "yes"} if input.parsed_path == ["not-boolean"]

result := {"allowed": false, "http_status": 200, "body": "denied, politely"} if input.parsed_path == ["polite"]

# Only a refusal reads http_status and body: an allowed answer with odd ones is still allowed.
result := {"allowed": true, "http_status": 418, "body": {"ignored": true}} if input.parsed_path == ["ignored"]
"""

UNDEFINED = """
package envoy.authz

import rego.v1

allow if input.attributes.request.http.method == "GET"
"""

METADATA = """
package httpapi.authz

import rego.v1

default decision := {"allowed": false, "dynamic_metadata": {"reason": "only GET", "tenant": "policy-says"}}

decision := {"allowed": true, "dynamic_metadata": {
	"tenant": "policy-says",
	"consumer": "policy-consumer",
	"reason": "rule 7",
	"outcome": "policy-outcome",
	"score": 0.75,
	"tags": ["a", "b"],
	"nested": {"k": "v"},
	"stoa.tenant": "spoofed",
}} if input.attributes.request.http.method == "GET"
"""


@dataclass(frozen=True)
class Policy:
    rego: str
    query: str = "data.envoy.authz.allow"
    failure_mode: str = "closed"


POLICIES = {
    "primer": Policy(PRIMER),
    "forms": Policy(FORMS),
    "object": Policy(OBJECT, "data.envoy.authz.result"),
    "responses": Policy(RESPONSES, "data.envoy.authz.result"),
    "undefined": Policy(UNDEFINED),
    "undefined-open": Policy(UNDEFINED, failure_mode="open"),
    "metadata": Policy(METADATA, "data.httpapi.authz.decision"),
}

# -- the cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    """What the upstream must have received."""

    target: str | None = None  # path and query, as received
    headers: dict[str, list[str]] = field(default_factory=dict)  # every value of these names, in order
    absent: tuple[str, ...] = ()
    body: bytes | None = None


@dataclass(frozen=True)
class Case:
    id: str
    policy: str
    method: str
    path: str
    status: int
    body: bytes = b""  # the response body, exactly; None-like JSON checks use ``json_reason``
    headers: dict[str, list[str]] = field(default_factory=dict)  # the client must get these values
    absent: tuple[str, ...] = ()  # the client must not get these headers
    upstream: Upstream | None = None  # None: the request never reached the upstream
    request_headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    # Link's own refusals carry its JSON error: the reason must contain this (body not compared).
    json_reason: str | None = None


def _form(pairs: list[tuple[str, str]]) -> bytes:
    return httpx.QueryParams(pairs).__str__().encode()


BOUNDARY = "X-BOUNDARY-42"
MULTIPART = (
    f"--{BOUNDARY}\r\n"
    'Content-Disposition: form-data; name="meta"\r\nContent-Type: application/json\r\n\r\n'
    '{"kind": "invoice", "total": 12}\r\n'
    f"--{BOUNDARY}\r\n"
    'Content-Disposition: form-data; name="note"\r\n\r\n'
    "hello world\r\n"
    f"--{BOUNDARY}\r\n"
    'Content-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\n'
    "line one\r\nline two\r\n"
    f"--{BOUNDARY}--\r\n"
).encode()
MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
NO_CONTENT_TYPE = ("content-type",)

CASES = [
    # Method, path and header rules; JWT claims through io.jwt.decode.
    Case("guest-reads-people", "primer", "GET", "/people", 200, request_headers={"authorization": f"Bearer {GUEST}"},
         upstream=Upstream("/people")),
    # glob.match with "/" as delimiter: "/people*" does not match "/people/7" (OPA says no, so does Link).
    Case("glob-stops-at-slash", "primer", "GET", "/people/7", 403,
         request_headers={"authorization": f"Bearer {GUEST}"}),
    # Boolean false: Envoy's bare 403, no body, no content type.
    Case("no-token", "primer", "GET", "/people", 403, absent=NO_CONTENT_TYPE),
    Case("guest-cannot-post", "primer", "POST", "/people", 403, absent=NO_CONTENT_TYPE,
         request_headers={"authorization": f"Bearer {GUEST}", **JSON},
         content=b'{"firstname": "Charlie", "lastname": "Opa"}'),
    Case("admin-posts-json", "primer", "POST", "/people", 200,
         request_headers={"authorization": f"Bearer {ADMIN}", **JSON},
         content=b'{"firstname": "Charlie", "lastname": "Opa"}',
         upstream=Upstream("/people", body=b'{"firstname": "Charlie", "lastname": "Opa"}')),
    Case("admin-cannot-post-self", "primer", "POST", "/people", 403,
         request_headers={"authorization": f"Bearer {ADMIN}", **JSON}, content=b'{"firstname": "Bob"}'),
    Case("parsed-path-decoded", "primer", "GET", "/directory/Charlie%20Opa", 200,
         upstream=Upstream("/directory/Charlie%20Opa")),
    Case("parsed-query", "primer", "GET", "/search?lang=en&q=a+b", 200, upstream=Upstream("/search?lang=en&q=a+b")),
    Case("parsed-query-other-lang", "primer", "GET", "/search?lang=fr&q=a+b", 403),
    Case("header-rule", "primer", "GET", "/versioned", 200, request_headers={"x-api-version": "2"},
         upstream=Upstream("/versioned")),
    Case("header-rule-wrong", "primer", "GET", "/versioned", 403, request_headers={"x-api-version": "1"}),
    Case("truncated-body", "primer", "POST", "/uploads", 200, request_headers=JSON,
         content=json.dumps({"kind": "big", "data": "x" * (MAX_BODY * 3)}).encode(),
         upstream=Upstream("/uploads", body=json.dumps({"kind": "big", "data": "x" * (MAX_BODY * 3)}).encode())),
    Case("whole-body", "primer", "POST", "/uploads", 200, request_headers=JSON, content=b'{"kind": "small"}',
         upstream=Upstream("/uploads")),
    Case("whole-body-other", "primer", "POST", "/uploads", 403, request_headers=JSON, content=b'{"kind": "medium"}'),
    Case("no-body-is-null", "primer", "POST", "/lenient", 200, upstream=Upstream("/lenient")),
    # Input OPA-Envoy cannot build: 400 before any policy runs (Link's JSON error says why).
    Case("malformed-json", "primer", "POST", "/lenient", 400, request_headers=JSON, content=b'{"forbidden": tru',
         json_reason="not valid JSON"),
    Case("json-trailing-garbage", "primer", "POST", "/lenient", 400, request_headers=JSON, content=b'{} {}',
         json_reason="not valid JSON"),
    Case("json-nan", "primer", "POST", "/lenient", 400, request_headers=JSON, content=b'{"a": NaN}',
         json_reason="not valid JSON"),
    Case("json-too-deep", "primer", "POST", "/lenient", 400, request_headers=JSON,
         content=b"[" * 300 + b"]" * 300, json_reason="nested too deeply"),
    Case("json-deep-objects", "primer", "POST", "/lenient", 400, request_headers=JSON,
         content=b'{"a":' * 150 + b"1" + b"}" * 150, json_reason="nested too deeply"),
    # Deeper than MAX_BODY bytes: Envoy cuts it, so it is truncated and never parsed (OPA-Envoy alike).
    Case("json-deep-but-truncated", "primer", "POST", "/lenient", 200, request_headers=JSON,
         content=b"[" * 5000 + b"]" * 5000, upstream=Upstream("/lenient")),
    Case("bad-query-escape", "primer", "GET", "/search?lang=%zz", 400, json_reason="invalid URL escape"),
    Case("semicolon-query", "primer", "GET", "/search?lang=en;q=1", 400, json_reason="semicolon"),
    Case("form-bad-escape", "forms", "POST", "/forms/approve", 400, request_headers=FORM,
         content=b"action=%zz", json_reason="invalid URL escape"),
    # Form and multipart bodies: maps of value lists.
    Case("form-approve", "forms", "POST", "/forms/approve", 200, request_headers=FORM,
         content=_form([("action", "approve"), ("reason", "looks good"), ("reason", "second")]),
         upstream=Upstream("/forms/approve", body=_form([("action", "approve"), ("reason", "looks good"),
                                                          ("reason", "second")]))),
    Case("form-reject", "forms", "POST", "/forms/approve", 403, request_headers=FORM,
         content=_form([("action", "reject"), ("reason", "looks good"), ("reason", "second")])),
    Case("form-charset-param", "forms", "POST", "/forms/approve", 200,
         request_headers={"content-type": "application/x-www-form-urlencoded; charset=utf-8"},
         content=b"action=approve&reason=looks+good&reason=second", upstream=Upstream("/forms/approve")),
    Case("multipart", "forms", "POST", "/forms/upload", 200, request_headers={"content-type": MULTIPART_TYPE},
         content=MULTIPART, upstream=Upstream("/forms/upload", body=MULTIPART)),
    Case("multipart-wrong-note", "forms", "POST", "/forms/upload", 403,
         request_headers={"content-type": MULTIPART_TYPE}, content=MULTIPART.replace(b"hello world", b"bye")),
    Case("multipart-unterminated", "forms", "POST", "/forms/upload", 400,
         request_headers={"content-type": MULTIPART_TYPE}, content=MULTIPART[:-(len(BOUNDARY) + 6)],
         json_reason="multipart"),
    Case("multipart-bad-json-part", "forms", "POST", "/forms/upload", 400,
         request_headers={"content-type": MULTIPART_TYPE},
         content=MULTIPART.replace(b'"total": 12}', b'"total": }'), json_reason="not valid JSON"),
    # Object results: headers to the upstream (a list's last value wins: Envoy replaces), removals,
    # response headers (appended), query parameters set (last value wins) and removed.
    Case("object-allowed", "object", "GET", "/items?token=secret&keep=1", 200,
         request_headers={"one-auth-header": "x", "another-auth-header": "y", "x-validated-by": "client",
                          "x-kept": "k"},
         headers={"x-foo": ["bar"], "set-cookie": ["a=1", "b=2"]},
         upstream=Upstream("/items?keep=1&added=1&lang=fr",
                           headers={"x-ext-auth-allow": ["yes"], "x-validated-by": ["security-checkpoint"],
                                    "x-multi": ["two"], "x-kept": ["k"]},
                           absent=("one-auth-header", "another-auth-header"))),
    Case("object-refused-401", "object", "POST", "/items", 401, body=b"Authentication Failed",
         headers={"x-ext-auth-allow": ["yes"], "x-multi": ["one", "two"], "content-type": ["text/plain"]},
         absent=("x-foo", "set-cookie")),
    Case("object-refused-403", "object", "POST", "/items", 403, body=b"Unauthorized Request",
         request_headers={"authorization": "Bearer x"}, headers={"x-validated-by": ["security-checkpoint"]}),
    # Redirects and custom responses: exactly what the result defines.
    Case("redirect-no-body", "responses", "GET", "/app", 302,
         headers={"location": ["https://login.example.com/?next=app"]}, absent=NO_CONTENT_TYPE),
    Case("redirect-not-needed", "responses", "GET", "/app", 200, request_headers={"cookie": "session=ok"},
         upstream=Upstream("/app")),
    Case("custom-json-body", "responses", "GET", "/busy", 429, body=b'{"message": "slow down"}',
         headers={"content-type": ["application/json"], "retry-after": ["30"]}),
    Case("status-200-refusal", "responses", "GET", "/polite", 200, body=b"denied, politely"),
    Case("allowed-ignores-refusal-fields", "responses", "GET", "/ignored", 200, upstream=Upstream("/ignored")),
    # Answers OPA-Envoy refuses (an error, Envoy's status_on_error = 503): a policy error in Link.
    Case("status-outside-enum", "responses", "GET", "/teapot", 503, json_reason="policy decision unavailable"),
    Case("status-299", "responses", "GET", "/odd", 503, json_reason="policy decision unavailable"),
    Case("body-not-string", "responses", "GET", "/object-body", 503, json_reason="policy decision unavailable"),
    Case("allowed-not-boolean", "responses", "GET", "/not-boolean", 503, json_reason="policy decision unavailable"),
    # Undefined decision: an error, so policy.failure_mode decides (closed 503, open lets it through).
    Case("defined", "undefined", "GET", "/x", 200, upstream=Upstream("/x")),
    Case("undefined-closed", "undefined", "POST", "/x", 503, json_reason="policy decision undefined"),
    Case("undefined-open", "undefined-open", "POST", "/x", 200, upstream=Upstream("/x")),
    # Dynamic metadata: the policy's object passes through (test_policy_metadata_reaches_the_access_log).
    Case("metadata-allowed", "metadata", "GET", "/m", 200, upstream=Upstream("/m")),
    Case("metadata-refused", "metadata", "POST", "/m", 403, absent=NO_CONTENT_TYPE),
]


# Where the HTTP transport answers differently by design (docs/adr/0007-httpauthz-http-ext-authz.md):
# HTTP ext_authz cannot rewrite the query string, so a policy that asks for it is refused (Link's 500,
# never a pass that would forward what the policy meant to strip).
HTTP_DIFFERS = {
    "object-allowed": Case("object-allowed", "object", "GET", "/items?token=secret&keep=1", 500,
                           json_reason="needs server.authz_transport: grpc"),
}


# -- running them ---------------------------------------------------------------------------------


class _Sidecars:
    """One Link + Envoy per (policy, transport), kept while consecutive tests use it."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._key: tuple[str, str] | None = None
        self._current: Sidecar | None = None

    def get(self, policy: str, transport: str) -> Sidecar:
        if self._key == (policy, transport) and self._current is not None:
            return self._current
        self.close()
        spec = POLICIES[policy]
        path = self._root / f"{policy}.rego"
        path.write_text(spec.rego)
        settings = {"policy.enabled": True, "policy.paths": [str(path)], "policy.query": spec.query,
                    "policy.failure_mode": spec.failure_mode}
        routes = [{"name": "api", "prefix": "/", "anonymous": True, "tenant": "acme"}]
        # Every route is a body route, so ext_authz sees request bodies (cut at MAX_BODY).
        envoy = {"ext_proc_prefixes": ("/",), "max_request_body_bytes": MAX_BODY}
        settings["server.authz_transport"] = transport  # each case on the transport it names (http is the default)
        self._current = Sidecar(settings, routes=routes, envoy_options=envoy).start()
        self._key = (policy, transport)
        return self._current

    def close(self) -> None:
        if self._current is not None:
            self._current.stop()
        self._current, self._key = None, None


@pytest.fixture(scope="module")
def sidecars(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Sidecars]:
    pool = _Sidecars(tmp_path_factory.mktemp("opa-compat"))
    yield pool
    pool.close()


def _params() -> list[Any]:
    out = []
    for transport in TRANSPORTS:
        reason = _transport_available(transport)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        out += [pytest.param(transport, case, id=f"{transport}-{case.id}", marks=marks) for case in CASES]
    return out


@pytest.mark.parametrize(("transport", "case"), _params())
def test_opa_envoy_answer(sidecars: _Sidecars, transport: str, case: Case) -> None:
    if transport == "http":
        case = HTTP_DIFFERS.get(case.id, case)
    sc = sidecars.get(case.policy, transport)
    sc.upstream.clear()
    r = sc.request(case.method, case.path, headers=case.request_headers, content=case.content)
    assert r.status_code == case.status, r.content
    if case.json_reason is None:
        if case.upstream is None:  # answered by Envoy for the policy: the body, byte for byte
            assert r.content == case.body
    else:
        error = r.json()
        assert case.json_reason in error["reason"] and error["request_id"] == r.headers["x-request-id"]
    for name, values in case.headers.items():
        assert r.headers.get_list(name) == values, name
    for name in case.absent:
        assert name not in r.headers, name
    seen = sc.upstream.requests
    if case.upstream is None:
        assert seen == []
        return
    assert len(seen) == 1
    got = seen[0]
    if case.upstream.target is not None:
        # Query parameters compared as a multiset: OPA-Envoy sets them in Go map order (unordered).
        want, have = urlsplit(case.upstream.target), urlsplit(got.path)
        assert (have.path, sorted(parse_qsl(have.query, keep_blank_values=True))) == (
            want.path, sorted(parse_qsl(want.query, keep_blank_values=True)))
    for name, values in case.upstream.headers.items():
        assert [v for k, v in got.raw_headers if k == name] == values, name
    for name in case.upstream.absent:
        assert name not in got.headers, name
    if case.upstream.body is not None:
        assert got.body == case.upstream.body


class _Outcomes:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def offer(self, outcome: Any) -> None:
        self.items.append(outcome)


@pytest.mark.parametrize("transport", [pytest.param(t, marks=[pytest.mark.skip(reason=r)] if (
    r := _transport_available(t)) else []) for t in TRANSPORTS])
def test_policy_metadata_reaches_the_access_log(sidecars: _Sidecars, transport: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy's dynamic_metadata reaches Envoy's access log as written (plus decision_id, as OPA-Envoy
    adds it); Link's own fields sit under ``stoa.`` and metering still reads Link's, never the policy's."""
    entries: list[Any] = []
    real = accesslog.outcome_from_entry

    def record(entry: Any) -> Any:
        entries.append(entry)
        return real(entry)

    monkeypatch.setattr(accesslog, "outcome_from_entry", record)
    sc = sidecars.get("metadata", transport)
    outcomes = _Outcomes()
    sc.link.app.add_outcome_sink(outcomes)
    allowed = sc.get("/m").headers["x-request-id"]
    refused = sc.post("/m").headers["x-request-id"]
    assert wait_until(lambda: {o.request_id for o in outcomes.items} >= {allowed, refused}, timeout=10)

    by_id = {e.request.request_id: e for e in entries}
    meta = json_format.MessageToDict(by_id[allowed].common_properties.metadata.filter_metadata[EXT_AUTHZ])
    policy_keys = {k: meta.get(k) for k in ("tenant", "consumer", "reason", "outcome", "score", "tags", "nested")}
    if transport == "grpc":
        assert policy_keys == {
            "tenant": "policy-says", "consumer": "policy-consumer", "reason": "rule 7", "outcome": "policy-outcome",
            "score": 0.75, "tags": ["a", "b"], "nested": {"k": "v"}}
    assert len(meta["decision_id"]) == 32
    # Link's fields: the route's tenant, never the policy's nor the spoofed "stoa.tenant".
    assert meta["stoa.tenant"] == "acme" and meta["stoa.outcome"] == "success"

    got = {o.request_id: o for o in outcomes.items}
    assert (got[allowed].tenant, got[allowed].outcome.value, got[allowed].reason) == ("acme", "success", "")
    assert got[allowed].decision_id == meta["decision_id"]
    assert (got[refused].tenant, got[refused].outcome.value, got[refused].reason) == (
        "acme", "policy_denied", "policy_denied")
    refused_meta = json_format.MessageToDict(by_id[refused].common_properties.metadata.filter_metadata[EXT_AUTHZ])
    # The policy's own keys: as written on gRPC; on HTTP under the stoa-meta- prefix (headers carry them).
    policy_key = "reason" if transport == "grpc" else "stoa-meta-reason"
    assert refused_meta[policy_key] == "only GET" and refused_meta["stoa.reason"] == "policy_denied"


def _protomap(msg: Any) -> dict[str, Any]:
    """OPA-Envoy's view of a protobuf message: JSON field names, set fields only, numbers as numbers,
    well-known types as plain messages (a Timestamp is ``{seconds, nanos}``), Struct as its JSON."""
    from google.protobuf import struct_pb2
    from google.protobuf.descriptor import FieldDescriptor

    if isinstance(msg, struct_pb2.Struct):
        return json_format.MessageToDict(msg)

    def one(fd: Any, value: Any) -> Any:
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            return _protomap(value)
        if fd.type == FieldDescriptor.TYPE_BYTES:
            return base64.b64encode(value).decode()
        return value

    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            value_fd = fd.message_type.fields_by_name["value"]
            out[fd.json_name] = {k: one(value_fd, v) for k, v in value.items()}
        elif fd.is_repeated:
            out[fd.json_name] = [one(fd, v) for v in value]
        else:
            out[fd.json_name] = one(fd, value)
    return out


@pytest.mark.parametrize(("method", "path", "headers", "content"), [
    ("GET", "/people?lang=en&lang=fr", {"x-user": "a", "authorization": f"Bearer {GUEST}"}, None),
    ("POST", "/people/Charlie%20Opa", JSON, b'{"firstname": "Charlie"}'),
    ("POST", "/uploads", JSON, b"[" + b"1," * MAX_BODY + b"1]"),  # cut by Envoy
    ("PUT", "/forms/approve", FORM, b"action=approve"),
])
def test_input_attributes_are_opa_envoys(sidecars: _Sidecars, monkeypatch: pytest.MonkeyPatch, method: str,
                                         path: str, headers: dict[str, str], content: bytes | None) -> None:
    """``input.attributes`` is the CheckRequest Envoy sent, mapped the way OPA-Envoy maps it (gRPC: the
    transport that has a CheckRequest)."""
    import link.grpc.authz as authz
    import link.pipeline.policy as policy_phase

    checks: list[Any] = []
    docs: list[dict[str, Any]] = []
    real_request, real_input = authz.request_from_check, policy_phase.build_input

    def record_check(check: Any) -> Any:
        checks.append(check)
        return real_request(check)

    def record_input(ctx: Any, needs: Any = None, contract: Any = None, parsed: Any = None) -> Any:
        docs.append(real_input(ctx, None, contract, parsed))
        return real_input(ctx, needs, contract, parsed)

    monkeypatch.setattr(authz, "request_from_check", record_check)
    monkeypatch.setattr(policy_phase, "build_input", record_input)
    sc = sidecars.get("primer", "grpc")
    sc.request(method, path, headers=headers, content=content)
    assert len(checks) == 1 and len(docs) == 1
    reference = _protomap(checks[0])["attributes"]
    assert docs[0]["attributes"] == reference
