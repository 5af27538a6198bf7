"""HTTP ext_authz adapter: Envoy's check request -> :class:`Request`, :class:`Decision` -> response bytes.

The only place (with :mod:`link.httpauthz.wire`) that knows how Envoy's
``http_service`` spells a check. The pipeline never sees any of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

from link.decision_metadata import DECISION_ID, LINK_PREFIX, wire_metadata
from link.httpauthz.wire import (
    CHECK_PREFIX,
    ENVOY_PREFIX,
    META_PREFIX,
    REMOVE_HEADER,
    wire_status,
)
from link.model import Decision, Outcome, PeerIdentity, Request
from link.telemetry.propagation import CONTEXT_TRACEPARENT, CONTEXT_TRACESTATE

_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large", 422: "Unprocessable Content",
    429: "Too Many Requests", 431: "Request Header Fields Too Large",
}
# Characters a header value may not carry (CR, LF, NUL and other controls): replaced, never sent.
_CONTROL = {c: " " for c in range(32) if c != 9} | {127: " "}
_UNSUPPORTED = "the policy rewrites query parameters, which needs server.authz_transport: grpc"
_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~")
# Envoy fails a check whose response has too many or too large headers, and a failed check passes in
# fail-open mode: metadata (which a policy can fill) is bounded well inside the cluster's limits.
MAX_META_HEADERS = 96
MAX_META_VALUE = 2_048
MAX_META_BYTES = 32_768  # all metadata headers together (the cluster allows 128 KiB of response headers)


def _split_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        return value, 0
    return host.strip("[]"), int(port)


def _peer(envoy: dict[str, str]) -> PeerIdentity | None:
    """What Envoy's TLS layer proved about the client (empty without a client certificate)."""
    uri = envoy.get("peer-uri-san", "")
    subject = envoy.get("peer-subject", "")
    cert = unquote(envoy.get("peer-cert", ""))  # %DOWNSTREAM_PEER_CERT% is URL-encoded PEM
    if not (uri or subject or cert):
        return None
    dns = envoy.get("peer-dns-san", "")
    return PeerIdentity(principal=uri.split(",")[0] if uri else subject, certificate_pem=cert, subject=subject,
                        uri_sans=tuple(u for u in uri.split(",") if u), dns_sans=tuple(d for d in dns.split(",") if d))


def request_from_check(method: str, target: str, headers: dict[str, str], body: bytes | None) -> Request:
    """Map one HTTP check onto the project's Request. ``target`` starts with :data:`CHECK_PREFIX`.

    ``headers`` are lower-cased (repeated names joined with ","); the ``stoa-envoy-*`` ones Envoy
    added are taken out and become the request's attributes.
    """
    full = target[len(CHECK_PREFIX):] or "/"
    path, _, query = full.partition("?")
    envoy: dict[str, str] = {}
    for key in [k for k in headers if k.startswith(ENVOY_PREFIX)]:
        value = headers.pop(key)
        if value and value != "-":
            envoy[key[len(ENVOY_PREFIX):]] = value
    source, source_port = _split_address(envoy.get("source", ""))
    dest, dest_port = _split_address(envoy.get("destination", ""))
    protocol = envoy.get("protocol", "HTTP/1.1")
    context: dict[str, str] = {}
    if envoy.get("traced") == "1" and "traceparent" in headers:
        # Envoy's tracer injected its ext_authz span here (what gRPC carries in call metadata).
        context[CONTEXT_TRACEPARENT] = headers["traceparent"]
        if "tracestate" in headers:
            context[CONTEXT_TRACESTATE] = headers["tracestate"]
    return Request(
        method=method,
        path=path or "/",
        query=query,
        headers=headers,
        host=headers.get("host", ""),
        scheme=envoy.get("scheme", "http"),
        body=body,
        body_truncated=headers.get("x-envoy-auth-partial-body") == "true",
        request_id=headers.get("x-request-id", ""),
        source_address=source,
        source_port=source_port,
        destination_address=dest,
        destination_port=dest_port,
        peer=_peer(envoy),
        protocol=protocol,
        context=context,
    )


def _clean(value: str) -> str:
    # Nearly every value is printable: the C check is the fast path, translate the exception.
    return value if value.isprintable() else value.translate(_CONTROL)


def _meta_value(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True, default=str)
    return str(value)


_META_NAMES: dict[str, str | None] = {}
_MAX_META_NAMES = 4_096  # Link's keys are a handful; a policy's are few too, but bounded all the same


def _meta_name(key: str) -> str | None:
    """The header a metadata key travels in: Link's own keys by their name (``stoa.tenant``,
    ``decision_id``: the same key in Envoy as on gRPC), the policy's under :data:`META_PREFIX`."""
    try:
        return _META_NAMES[key]
    except KeyError:
        pass
    name: str | None = key.lower()
    if not name or not _TOKEN.issuperset(name):
        name = None
    elif not (name.startswith(LINK_PREFIX) or name == DECISION_ID):
        name = META_PREFIX + name
    if len(_META_NAMES) < _MAX_META_NAMES:
        _META_NAMES[key] = name
    return name


def _header_lines(headers: Iterable[tuple[str, str]], out: list[str]) -> None:
    for key, value in headers:
        out.append(f"{key}: {_clean(value)}\r\n")


def _metadata_lines(decision: Decision, out: list[str]) -> None:
    sent = size = 0
    for key, raw in wire_metadata(decision).items():
        name, value = _meta_name(key), _meta_value(raw)
        if name is None or value is None:
            continue
        line = f"{name}: {_clean(value[:MAX_META_VALUE])}\r\n"
        sent += 1
        size += len(line)
        if sent > MAX_META_HEADERS or size > MAX_META_BYTES:
            break
        out.append(line)


def response_bytes(decision: Decision, keep_alive: bool = True) -> bytes:
    """The whole HTTP/1.1 response Envoy reads as the decision (what ``check_response`` is to gRPC)."""
    lines: list[str] = []
    policy = decision.policy
    if decision.allowed and policy is not None and (policy.query_to_set or policy.query_to_remove):
        # HTTP ext_authz cannot rewrite the query string; passing the request unchanged could
        # forward what the policy meant to strip. Refused, loudly (the gRPC transport carries it).
        request_id = decision.response_headers.get("x-request-id", "")
        refused = Decision.deny(500, Outcome.ERROR, "policy_unsupported", _UNSUPPORTED,
                                {"x-request-id": request_id} if request_id else None)
        refused.body = json.dumps({"error": "internal_error", "reason": _UNSUPPORTED, "request_id": request_id},
                                  separators=(",", ":")).encode()
        refused.record = replace(decision.record, outcome=Outcome.ERROR.value, reason="policy_unsupported")
        decision = refused
        policy = None
    if decision.allowed:
        status = 200
        _header_lines(decision.upstream_headers.items(), lines)
        if policy is not None:
            _header_lines(policy.upstream_headers, lines)
        if decision.remove_headers:
            lines.append(f"{REMOVE_HEADER}: {','.join(decision.remove_headers)}\r\n")
        _header_lines([(k, v) for k, v in decision.response_headers.items()
                       if decision.upstream_headers.get(k) != v], lines)
        if policy is not None:
            _header_lines(policy.response_headers, lines)
        body = b""
    else:
        status = wire_status(decision.http_status)
        _header_lines(decision.response_headers.items(), lines)
        body = decision.body or b""
        if decision.policy_response:
            if policy is not None:
                _header_lines(policy.response_headers, lines)
        elif body:
            lines.append(f"content-type: {_clean(decision.content_type)}\r\n")
    _metadata_lines(decision, lines)
    head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Refused')}\r\ncontent-length: {len(body)}\r\n"
    if not keep_alive:
        head += "connection: close\r\n"
    return (head + "".join(lines) + "\r\n").encode("utf-8", "replace") + body


def plain_response(status: int, text: str, keep_alive: bool = False) -> bytes:
    """A response for what is not a check (health, malformed requests)."""
    body = text.encode()
    close = "" if keep_alive else "connection: close\r\n"
    return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: text/plain\r\n"
            f"content-length: {len(body)}\r\n{close}\r\n").encode() + body
